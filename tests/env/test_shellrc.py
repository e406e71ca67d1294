"""cpk path add: marked, idempotent blocks in start-up files, checked with real shells."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot

from contentpkg.env.shellrc import (
    BEGIN,
    END,
    add_to_path,
    default_shells,
    parse_directories,
    rc_files,
    render_block,
)
from contentpkg.errors import CpkError

BASE_PATH = "/usr/bin:/bin"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for add_to_path and for the shells that read the files."""
    return {"HOME": os.fspath(home), "PATH": BASE_PATH, "SHELL": "/bin/sh", **extra}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def snapshot_bytes(home: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(d, f), home): Path(d, f).read_bytes()
        for d, _dirs, files in os.walk(home)
        for f in files
    }


def shell_path(home: Path, *argv: str, **extra: str) -> list[str]:
    """PATH as a real shell started with argv sees it, split."""
    proc = subprocess.run(
        list(argv),
        env=env_for(home, **extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1].split(":")


# --- the files -------------------------------------------------------------------------


def test_running_twice_gives_the_same_bytes(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "env" / "bin"
    env = env_for(home)
    first = add_to_path(target, ["sh", "bash", "zsh", "fish"], environ=env)
    assert {c.action for c in first.changes} == {"created"}
    before = snapshot_bytes(home)
    second = add_to_path(target, ["sh", "bash", "zsh", "fish"], environ=env)
    assert {c.action for c in second.changes} == {"unchanged"}
    assert snapshot_bytes(home) == before
    assert sorted(before) == [
        ".bashrc",
        ".config/fish/conf.d/cpk-path.fish",
        ".profile",
        ".zshenv",
    ]
    for text in before.values():
        assert text.decode().count(BEGIN) == 1 and text.decode().count(END) == 1


def test_two_directories_share_one_block(home: Path, tmp_path: Path) -> None:
    env = env_for(home)
    one, two = tmp_path / "one", tmp_path / "two"
    add_to_path(one, ["sh", "fish"], environ=env)
    result = add_to_path(two, ["sh", "fish"], environ=env)
    assert [c.action for c in result.changes] == ["updated", "updated"]
    for change in result.changes:
        assert change.directories == [os.fspath(one), os.fspath(two)]
        text = change.path.read_text()
        assert text.count(BEGIN) == 1
        assert os.fspath(one) in text and os.fspath(two) in text
    # Adding the first again changes nothing and keeps the order.
    again = add_to_path(one, ["sh", "fish"], environ=env)
    assert [c.action for c in again.changes] == ["unchanged", "unchanged"]


def test_the_rest_of_the_file_is_kept(home: Path, tmp_path: Path) -> None:
    profile = home / ".profile"
    profile.write_bytes(b"# mine\nexport EDITOR=vi")  # no final newline
    env = env_for(home)
    add_to_path(tmp_path / "a", ["sh"], environ=env)
    text = profile.read_text()
    assert text.startswith("# mine\nexport EDITOR=vi\n\n" + BEGIN)
    # Lines after the block stay after it when the block grows.
    profile.write_text(text + "alias ll='ls -l'\n\xe9t\xe9\n")
    add_to_path(tmp_path / "b", ["sh"], environ=env)
    text = profile.read_text()
    assert text.startswith("# mine\nexport EDITOR=vi\n\n" + BEGIN)
    assert text.endswith(END + "\nalias ll='ls -l'\n\xe9t\xe9\n")
    assert parse_directories(text.splitlines(), "sh") == [
        os.fspath(tmp_path / "a"),
        os.fspath(tmp_path / "b"),
    ]


def test_two_blocks_are_folded_into_one(home: Path, tmp_path: Path) -> None:
    a, b = os.fspath(tmp_path / "a"), os.fspath(tmp_path / "b")
    (home / ".profile").write_text(
        "top\n" + render_block([a], "sh") + "middle\n" + render_block([b], "sh") + "end\n"
    )
    add_to_path(tmp_path / "c", ["sh"], environ=env_for(home))
    text = (home / ".profile").read_text()
    c = os.fspath(tmp_path / "c")
    assert text == "top\n" + render_block([a, b, c], "sh") + "middle\nend\n"


def test_mode_and_symlinks_are_kept(home: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "bashrc").write_text("# managed elsewhere\n")
    (dotfiles / "bashrc").chmod(0o600)
    (home / ".bashrc").symlink_to(dotfiles / "bashrc")
    add_to_path(tmp_path / "a", ["bash"], environ=env_for(home))
    assert (home / ".bashrc").is_symlink()
    assert BEGIN in (dotfiles / "bashrc").read_text()
    assert stat.S_IMODE(os.stat(dotfiles / "bashrc").st_mode) == 0o600
    # No temporary files left beside it.
    assert sorted(os.listdir(dotfiles)) == ["bashrc"]
    assert stat.S_IMODE(os.stat(home / ".profile").st_mode) == 0o644


@pytest.mark.parametrize(
    ("directory", "message"),
    [("/a:b", "contains ':'"), ("/a\nb", "contains a newline"), ("", "the directory is empty")],
)
def test_bad_directories_are_refused(home: Path, directory: str, message: str) -> None:
    with pytest.raises(CpkError, match=message):
        add_to_path(directory, ["sh", "bash", "fish"], environ=env_for(home))
    assert os.listdir(home) == []


def test_a_broken_block_is_an_error_and_nothing_is_written(home: Path) -> None:
    (home / ".bashrc").write_text(f"x\n{BEGIN}\nno end\n")
    before = tree_snapshot(home)
    with pytest.raises(CpkError, match=r"\.bashrc: has '# >>> cpk path >>>' without"):
        add_to_path("/opt/x", ["sh", "bash"], environ=env_for(home))
    assert tree_snapshot(home) == before  # not even ~/.profile, planned first


def test_dry_run_writes_nothing(home: Path) -> None:
    result = add_to_path("/opt/x", ["sh", "bash"], dry_run=True, environ=env_for(home))
    assert [c.action for c in result.changes] == ["created", "created"]
    assert "'/opt/x'" in result.changes[0].block
    assert os.listdir(home) == []


def test_relative_and_tilde_directories_become_absolute(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = add_to_path("rel/bin", ["sh"], environ=env_for(home))
    assert result.directory == tmp_path / "rel" / "bin"
    result = add_to_path("~/bin", ["sh"], environ=env_for(home))
    assert result.directory == home / "bin"
    # A symlink is kept as spelled: a profile's alias must stay an alias.
    (tmp_path / "alias").symlink_to(tmp_path / "rel")
    result = add_to_path(tmp_path / "alias" / "bin", ["sh"], environ=env_for(home))
    assert result.directory == tmp_path / "alias" / "bin"


def test_which_shells_and_files_by_default(home: Path) -> None:
    env = env_for(home, SHELL="/usr/bin/zsh")
    assert default_shells(env) == ["sh", "zsh"]
    (home / ".bashrc").write_text("")
    (home / ".config" / "fish").mkdir(parents=True)
    assert default_shells(env) == ["sh", "bash", "zsh", "fish"]
    files = {f.path.relative_to(home).as_posix(): f.shells for f in rc_files(["sh", "bash"], env)}
    assert files == {".profile": ("sh", "bash"), ".bashrc": ("bash",)}
    # With a .bash_profile, bash's login shell never reads .profile.
    (home / ".bash_profile").write_text("")
    files = {f.path.relative_to(home).as_posix(): f.shells for f in rc_files(["sh", "bash"], env)}
    assert files == {".profile": ("sh",), ".bashrc": ("bash",), ".bash_profile": ("bash",)}
    zdot = home / "zdot"
    env = env_for(home, ZDOTDIR=os.fspath(zdot), XDG_CONFIG_HOME=os.fspath(home / "cfg"))
    paths = [f.path for f in rc_files(["zsh", "fish"], env)]
    assert paths == [zdot / ".zshenv", home / "cfg" / "fish" / "conf.d" / "cpk-path.fish"]


def test_quoting_round_trips() -> None:
    weird = "/opt/it's a $HOME `x` \\ * [dir]"
    for syntax in ("sh", "fish"):
        block = render_block([weird, "/plain"], syntax)
        assert parse_directories(block.splitlines(), syntax) == [weird, "/plain"]


# --- real shells ---------------------------------------------------------------------


WEIRD = "it's a $dir *"


def test_sh_login_shell(home: Path, tmp_path: Path) -> None:
    target = tmp_path / WEIRD / "bin"
    add_to_path(target, ["sh"], environ=env_for(home))
    path = shell_path(home, "sh", "-lc", 'echo "$PATH"')
    assert path[0] == os.fspath(target) and path.count(os.fspath(target)) == 1


def test_bash_login_and_interactive(home: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    one, two = tmp_path / "one" / "bin", tmp_path / WEIRD / "bin"
    env = env_for(home)
    add_to_path(one, ["bash"], environ=env)
    add_to_path(two, ["bash"], environ=env)
    for flag in ("-lc", "-ic"):
        path = shell_path(home, "bash", flag, 'echo "$PATH"')
        # Each directory once; the one added last first.
        assert path[:2] == [os.fspath(two), os.fspath(one)], (flag, path)
        assert path.count(os.fspath(one)) == 1 and path.count(os.fspath(two)) == 1
    # A shell started from a shell that has them already adds nothing twice.
    nested = shell_path(home, "bash", "-lc", "bash -ic 'echo \"$PATH\"' </dev/null")
    assert nested.count(os.fspath(one)) == 1 and nested.count(os.fspath(two)) == 1


def test_bash_with_a_bash_profile(home: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    (home / ".bash_profile").write_text("# bash reads me instead of .profile\n")
    target = tmp_path / "t" / "bin"
    add_to_path(target, ["bash"], environ=env_for(home))
    assert not (home / ".profile").exists()
    assert shell_path(home, "bash", "-lc", 'echo "$PATH"')[0] == os.fspath(target)


def test_zsh(home: Path, tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    target = tmp_path / WEIRD / "bin"
    add_to_path(target, ["zsh"], environ=env_for(home))
    for argv in (["zsh", "-c"], ["zsh", "-lc"], ["zsh", "-ic"]):
        path = shell_path(home, *argv, 'echo "$PATH"')
        assert path[0] == os.fspath(target) and path.count(os.fspath(target)) == 1, argv
    nested = shell_path(home, "zsh", "-c", "zsh -c 'echo \"$PATH\"'")
    assert nested.count(os.fspath(target)) == 1


def test_fish(home: Path, tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    one, two = tmp_path / "one" / "bin", tmp_path / WEIRD / "bin"
    env = env_for(home)
    add_to_path(one, ["fish"], environ=env)
    add_to_path(two, ["fish"], environ=env)
    path = shell_path(home, "fish", "-c", "string join : $PATH")
    assert path[:2] == [os.fspath(two), os.fspath(one)]
    nested = shell_path(home, "fish", "-c", "fish -c 'string join : $PATH'")
    assert nested.count(os.fspath(one)) == 1 and nested.count(os.fspath(two)) == 1


# --- the command -------------------------------------------------------------------------


def test_cpk_path_add(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "where" / "bin"
    target.mkdir(parents=True)
    env = env_for(home)
    env["PATH"] = os.environ["PATH"]  # to find python's own libraries, as usual
    dry = run_cpk("path", "add", target, "--shell", "bash", "--dry-run", env=env, check=True)
    assert f"would create: {home / '.profile'} (bash)" in dry.stdout
    assert f"'{target}'" in dry.stdout and os.listdir(home) == []
    done = run_cpk("path", "add", target, "--shell", "bash", env=env, check=True)
    assert f"created: {home / '.bashrc'} (bash)" in done.stdout
    assert "exec $SHELL" in done.stderr
    again = run_cpk("path", "add", target, "--shell", "bash", env=env, check=True)
    assert f"unchanged: {home / '.bashrc'} (bash) already adds {target}" in again.stdout
    bad = run_cpk("path", "add", "/a:b", env=env)
    assert bad.returncode == 1
    assert (
        bad.stderr
        == "cpk: error: '/a:b': contains ':' (the PATH separator), which cannot be put on PATH\n"
    )
