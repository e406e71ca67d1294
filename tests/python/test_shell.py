"""cpk shell: a subshell in the environment, nothing sourced, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.index import LocalIndex
from support.wheels import make_wheel


def test_shell_enters_and_leaves_the_environment(tmp_path: Path) -> None:
    make_wheel(tmp_path / "dists", "alpha", "1.0")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "requirements.txt").write_text("alpha\n")
    with LocalIndex(tmp_path / "dists") as index:
        env = dict(os.environ, SHELL="/bin/sh", PATH=os.environ["PATH"])
        env.pop("VIRTUAL_ENV", None)
        script = (
            'python -c "import alpha, sys; '
            'print(alpha.__version__, sys.prefix != sys.base_prefix)"\n'
            'echo "venv=$VIRTUAL_ENV"\n'
            "exit 3\n"
        )
        proc = subprocess.run(
            [sys.executable, "-m", "contentpkg", "shell", "--index-url", index.url],
            cwd=root, env=env, input=script, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0] == "1.0 True", proc.stderr
    venv = lines[1].removeprefix("venv=")
    assert Path(venv).is_dir() and Path(venv, "pyvenv.cfg").is_file()
    assert proc.returncode == 3  # the shell's own exit status
    # The parent environment never changed: a process started after has none of it.
    after = subprocess.run(["/bin/sh", "-c", 'echo "[$VIRTUAL_ENV]"'], env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert after.stdout.strip() == "[]"
