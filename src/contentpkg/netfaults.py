"""How a failed network exchange is told to the user, for every HTTP client.

The index client and the registry client both retry on the same faults and
describe them in one short phrase; they read it from here so the two never
drift apart.
"""

from __future__ import annotations


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; None for an HTTP date or
    nothing (the caller's exponential backoff then decides)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def describe(exc: BaseException) -> str:
    """One short phrase for a network failure, without urllib3's object reprs."""
    text = str(exc)
    lowered = text.lower()
    if "incompleteread" in lowered or "incomplete read" in lowered:
        return "truncated response"
    if "reset" in lowered or "aborted" in lowered or "remotedisconnected" in lowered:
        return "connection reset"
    if "refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "certificate" in lowered or "ssl" in lowered:
        return "TLS handshake failed (is the server's CA in SSL_CERT_FILE?)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    cause = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, BaseException):
        return describe(cause)
    return text.splitlines()[0] if text else type(exc).__name__
