"""Starting a command in an environment, and changing WHERE or a profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from contentpkg.env.execution import exec_command
from contentpkg.env.profiles import Profile, change_env
from contentpkg.errors import CpkError, ExecError


def test_a_missing_command_is_status_127_naming_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ExecError) as caught:
        exec_command(["no-such-cmd-xyz"], {"PATH": str(tmp_path)}, where="profile p")
    assert caught.value.status == 127
    assert str(caught.value) == "no-such-cmd-xyz: command not found in profile p"


def test_a_file_that_cannot_run_is_status_126(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a program\n")
    with pytest.raises(ExecError) as caught:
        exec_command(["plain"], {"PATH": str(tmp_path)}, where="x")
    assert caught.value.status == 126
    assert str(caught.value) == "plain: permission denied"


def test_exec_replaces_the_process_with_the_given_environment(tmp_path: Path) -> None:
    code = (
        "from contentpkg.env.execution import exec_command\n"
        "exec_command(['sh', '-c', 'echo $ONLY_HERE'], {'PATH': '/usr/bin:/bin', "
        "'ONLY_HERE': 'yes'}, where='test')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert (proc.returncode, proc.stdout) == (0, "yes\n"), proc.stderr


def _change(marker: list[tuple[Path, Path | None, bool]], changed: bool):
    def change(where: Path, base: Path | None, root: bool) -> SimpleNamespace:
        marker.append((where, base, root))
        (where / "made").write_text("x")
        return SimpleNamespace(changed=changed, where=where)

    return change


def test_change_env_in_where_is_in_place_and_rooted(tmp_path: Path) -> None:
    calls: list[tuple[Path, Path | None, bool]] = []
    where = tmp_path / "where"
    where.mkdir()
    result = change_env(_change(calls, True), home=tmp_path, where=where, description="d")
    assert calls == [(where, None, True)] and result.where == where
    with pytest.raises(CpkError, match="give WHERE or --profile, not both"):
        change_env(_change(calls, True), home=tmp_path, where=where, profile="p", description="")


def test_change_env_in_a_profile_makes_a_generation_unless_nothing_changed(
    tmp_path: Path,
) -> None:
    calls: list[tuple[Path, Path | None, bool]] = []
    result = change_env(_change(calls, True), home=tmp_path, description="first", command="c")
    profile = Profile("default", tmp_path)
    assert result.where == profile.alias and profile.numbers() == [1]
    assert calls[0][1:] == (None, False)
    again = change_env(_change(calls, False), home=tmp_path, profile="default", description="no")
    assert not again.changed and profile.numbers() == [1]
    assert calls[1][1] == profile.gens / "1"  # built from the current generation
