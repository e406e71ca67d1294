"""Replacing cpk by a command in an environment: one exec, one error shape.

``cpk exec``, ``cpk shell ENV`` and ``cpk run`` all end the same way: the
command replaces this process (its exit status and signals are its own, with
no cpk process left between), or one error line says why it could not start.
Standard library only, so the run memo's hot path may use it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from contentpkg.errors import ExecError


def exec_command(
    command: Sequence[str],
    environ: Mapping[str, str],
    *,
    where: str,
    program: str | None = None,
) -> NoReturn:
    """Replace this process with command, searching ``environ``'s PATH.

    ``program`` is the file to run when the caller already found it (argv[0]
    stays ``command[0]``); ``where`` says in the error where the command was
    looked for. Raises :class:`ExecError` (status 127 or 126) if it cannot
    start; output buffered so far is flushed first, since exec discards it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(program or command[0], list(command), dict(environ))
    except FileNotFoundError:
        raise ExecError(
            f"{command[0]}: command not found in {where}", command=command[0], status=127
        ) from None
    except PermissionError:
        raise ExecError(
            f"{command[0]}: permission denied", command=command[0], status=126
        ) from None
