"""Benchmark: does HTTP/2 earn a dependency? urllib3 (HTTP/1.1, pooled) against httpx.

Fetches what a cold lock of bench/python_fetch.py's project asks the index
for: the 45 project pages (PEP 691 JSON) and, for each, the last 64 KiB of
one wheel (the range request that reads a wheel's zip directory), from 8
threads as the index client's look-ahead does. Three clients, each in a
fresh process (so imports and TLS handshakes count), interleaved:

* urllib3: what cpk uses, HTTP/1.1 over a pool of keep-alive connections,
  one TLS context shared by all of them;
* httpx with ``http2=True``: every request multiplexed on one connection;
* httpx over HTTP/1.1, to tell the protocol from the library.

Prints the median wall and CPU time of the fetches, the import time, and
how many runs failed. Needs network access to PyPI and ``httpx[http2]``
importable (``pip install --target DIR 'httpx[http2]'`` and ``--path DIR``
keeps it out of the environment cpk runs in).

    python bench/python_http2.py [--runs 5] [--path DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

NAMES = [
    "flask", "requests", "rich", "pydantic", "httpx", "sqlalchemy", "pytest", "black", "jinja2",
    "click", "attrs", "numpy", "pyyaml", "boto3", "packaging", "pytokens", "platformdirs",
    "mypy-extensions", "pathspec", "jmespath", "s3transfer", "botocore", "blinker",
    "itsdangerous", "urllib3", "werkzeug", "python-dateutil", "markupsafe", "six", "certifi",
    "httpcore", "idna", "anyio", "h11", "typing-extensions", "annotated-types",
    "typing-inspection", "pydantic-core", "colorama", "pluggy", "iniconfig", "pygments",
    "charset-normalizer", "markdown-it-py", "mdurl",
]  # fmt: skip
ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
INDEX = "https://pypi.org/simple/"


def child(mode: str) -> None:
    """One measurement, printed as JSON: import, wall and CPU seconds."""
    started = time.perf_counter()
    if mode == "urllib3":
        import urllib3
        from urllib3.util.ssl_ import create_urllib3_context

        tls = create_urllib3_context()
        tls.load_default_certs()
        pool = urllib3.PoolManager(maxsize=10, ssl_context=tls)

        def get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
            response = pool.request("GET", url, headers=headers)
            return response.status, response.data

    else:
        import httpx

        client = httpx.Client(http2=mode == "httpx-h2", limits=httpx.Limits(max_connections=10))

        def get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
            response = client.get(url, headers=headers)
            return response.status_code, response.content

    imported = time.perf_counter() - started

    def one(name: str) -> int:
        _, body = get(f"{INDEX}{name}/", ACCEPT)
        files = json.loads(body)["files"]
        wheels = [f for f in files if f["filename"].endswith(".whl")] or files
        size = wheels[-1].get("size") or 65536
        status, _ = get(wheels[-1]["url"], {"Range": f"bytes={max(0, size - 65536)}-"})
        return status

    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(8) as threads:
        statuses = set(threads.map(one, NAMES))
    print(json.dumps({
        "import": imported,
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "ok": statuses <= {200, 206},
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--path", help="a directory holding httpx[http2] (put on PYTHONPATH)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    env = dict(os.environ)
    if args.path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.path, env.get("PYTHONPATH")]))
    modes = ("urllib3", "httpx-h2", "httpx-h1")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    failed = dict.fromkeys(modes, 0)
    for _ in range(args.runs):
        for mode in modes:
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode], env=env, capture_output=True, text=True
            )
            if done.returncode != 0 or not done.stdout.strip():
                failed[mode] += 1
                continue
            row = json.loads(done.stdout)
            if not row.pop("ok"):
                failed[mode] += 1
            results[mode].append(row)
    print(f"{len(NAMES)} pages + {len(NAMES)} range requests, 8 threads, medians of {args.runs}")
    print(f"{'client':<10} {'import':>8} {'wall':>7} {'cpu':>6}   wall min-max  failed")
    for mode in modes:
        rows = results[mode]
        if not rows:
            print(f"{mode:<10} {'-':>8} {'-':>7} {'-':>6}   {'-':>12}  {failed[mode]}")
            continue
        med = {k: statistics.median(r[k] for r in rows) for k in ("import", "wall", "cpu")}
        walls = [r["wall"] for r in rows]
        print(
            f"{mode:<10} {med['import'] * 1000:>6.0f}ms {med['wall']:>6.2f}s {med['cpu']:>5.2f}s"
            f"   {min(walls):.2f}-{max(walls):.2f}  {failed[mode]}"
        )


if __name__ == "__main__":
    main()
