"""Bindings: cpk env sourced by real shells, cpk shell, cpk exec, requirements."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.context import home
from support.envdirs import add_program, exit_var, install

from contentpkg.env.bindings import (
    IF_SET,
    PREPEND,
    REPORT,
    apply,
    check_requirements,
    load,
    open_env,
    render,
)
from contentpkg.env.profiles import Profile
from contentpkg.errors import CpkError

CPK = f"{shlex.quote(sys.executable)} -m contentpkg"
MAN = shutil.which("man")


def _shell_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything a binding would touch."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MANPATH", "XDG_DATA_DIRS", "CPK_ENV", "TEXTDOMAINDIR")
    }
    env.update(extra)
    return env


def _need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it with apt-get)")
    return path


def _source_and_run(shell: str, spec: str, body: str, env: dict[str, str]) -> list[str]:
    """Apply `cpk env --shell SHELL SPEC` in a real SHELL, then run body there."""
    _need(shell)
    if shell == "fish":
        script = f"{CPK} env --shell fish {shlex.quote(spec)} | source\n{body}"
    else:
        script = f'eval "$({CPK} env --shell {shell} {shlex.quote(spec)})"\n{body}'
    proc = subprocess.run(
        [shell, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{shell}:\n{script}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.splitlines()


# --- the shells -------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh", "fish"])
def test_env_output_sourced_by_real_shells_finds_programs_and_man_pages(shell: str) -> None:
    install("default", "hello", "2.12")
    install("default", "jq", "1.6")
    alias = Profile("default", home()).alias
    man = "man -w jq" if MAN else "echo no-man"
    lines = _source_and_run(shell, "default", f"command -v jq\njq\n{man}\n", _shell_env())
    assert lines[0] == f"{alias}/bin/jq"
    assert lines[1] == "jq 1.6 payload-1.6"
    if MAN is None:
        pytest.skip("man (man-db) is not installed: programs checked, man pages not")
    # man-db derived the man path from bin/ on PATH: no MANPATH was needed.
    assert lines[2] == f"{alias}/share/man/man1/jq.1"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_set_manpath_gets_the_env_prepended(shell: str) -> None:
    if MAN is None:
        pytest.skip("man (man-db) is not installed")
    install("default", "jq", "1.6")
    alias = Profile("default", home()).alias
    env = _shell_env(MANPATH="/usr/share/man")
    lines = _source_and_run(shell, "default", "man -w jq\nprintenv MANPATH\n", env)
    assert lines == [f"{alias}/share/man/man1/jq.1", f"{alias}/share/man:/usr/share/man"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_quoting_survives_awkward_paths(tmp_path: Path, shell: str) -> None:
    env_dir = tmp_path / 'it\'s a "dir" $HOME `x`' / "env"
    add_program(env_dir, "hello", "1")
    lines = _source_and_run(shell, str(env_dir), "command -v hello\nhello\n", _shell_env())
    assert lines == [f"{env_dir}/bin/hello", "hello 1 payload-1"]


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh", "fish"])
@pytest.mark.parametrize(
    "before",
    [
        {},
        {"XDG_DATA_DIRS": "/opt/share:/usr/share", "MANPATH": "/usr/share/man"},
        {"XDG_DATA_DIRS": "", "MANPATH": ""},
    ],
)
def test_shells_and_exec_agree_on_every_variable(
    tmp_path: Path, shell: str, before: dict[str, str]
) -> None:
    env_dir = tmp_path / "env"
    add_program(env_dir, "hello", "1")
    base = _shell_env(**before)
    expected = apply(load(env_dir).bindings, base)
    # What a child of the shell is given, exactly as exported (set or not).
    show = "env | grep -E '^(PATH|MANPATH|XDG_DATA_DIRS)=' || true\n"
    lines = _source_and_run(shell, str(env_dir), show, base)
    got = dict(line.split("=", 1) for line in lines)
    for var in ("PATH", "MANPATH", "XDG_DATA_DIRS"):
        assert got.get(var) == expected.get(var), (var, lines)


def test_man_pages_without_bin_get_a_manpath_that_keeps_the_default(tmp_path: Path) -> None:
    env_dir = tmp_path / "docs"
    add_program(env_dir, "manual", "1")
    # A documentation-only env: its pages are beside no bin/ on PATH.
    shutil.rmtree(env_dir / "bin")
    manifest = json.loads((env_dir / ".cpk/manifest.json").read_text())
    for entry in manifest["entries"].values():
        del entry["provides"]["PATH"]
    (env_dir / ".cpk/manifest.json").write_text(json.dumps(manifest))
    bindings = {b.namespace: b for b in load(env_dir).bindings}
    assert "PATH" not in bindings
    assert bindings["MANPATH"].how == PREPEND and bindings["MANPATH"].default == ("",)
    assert apply(list(bindings.values()), {})["MANPATH"] == f"{env_dir}/share/man:"
    if MAN is None:
        pytest.skip("man (man-db) is not installed")
    lines = _source_and_run("bash", str(env_dir), "man -w manual\necho $MANPATH\n", _shell_env())
    assert lines == [f"{env_dir}/share/man/man1/manual.1", f"{env_dir}/share/man:"]
    system = subprocess.run(["man", "-w", "man"], capture_output=True, text=True)
    if system.returncode == 0:  # the trailing ':' kept the system's pages findable
        lines = _source_and_run("bash", str(env_dir), "man -w man\n", _shell_env())
        assert lines == [system.stdout.strip()]


def test_env_default_shell_comes_from_SHELL_and_notes_are_comments(tmp_path: Path) -> None:
    install("default", "jq", "1.6")
    fish = run_cpk("env", env={"SHELL": "/usr/bin/fish"}, check=True).stdout
    assert "set -gx --path PATH" in fish and "export" not in fish
    other = run_cpk("env", env={"SHELL": "/bin/ksh"}, check=True).stdout
    assert "export PATH=" in other
    for line in other.splitlines():
        assert line.startswith(("export ", "if [ ", "#")), line


def test_unexported_bindings_are_listed_not_exported(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    add_program(env_dir, "hello", "1")
    (env_dir / "lib").mkdir()
    (env_dir / "share/locale/de/LC_MESSAGES").mkdir(parents=True)
    manifest = json.loads((env_dir / ".cpk/manifest.json").read_text())
    entry = next(iter(manifest["entries"].values()))
    entry["provides"]["LD_LIBRARY_PATH"] = ["lib/libhello.so.1"]
    entry["provides"]["locale"] = ["share/locale/de/LC_MESSAGES/hello.mo"]
    (env_dir / ".cpk/manifest.json").write_text(json.dumps(manifest))

    how = {b.namespace: b.how for b in load(env_dir).bindings}
    assert how == {
        "PATH": PREPEND,
        "MANPATH": IF_SET,
        "XDG_DATA_DIRS": PREPEND,
        "LD_LIBRARY_PATH": REPORT,
        "locale": REPORT,
    }
    script = run_cpk("env", "--shell", "bash", env_dir, check=True).stdout
    assert "export LD_LIBRARY_PATH" not in script and "TEXTDOMAINDIR=" not in script
    assert f"# LD_LIBRARY_PATH (LD_LIBRARY_PATH) {env_dir}/lib: not exported" in script
    table = run_cpk("env", "--list", env_dir, check=True).stdout
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:] if line[:1] != " "}
    assert rows["LD_LIBRARY_PATH"][2:] == [f"{env_dir}/lib", "not", "exported"]
    assert rows["locale"][1:3] == ["TEXTDOMAINDIR", f"{env_dir}/share/locale"]
    assert rows["PATH"][2:] == [f"{env_dir}/bin", "prepended"]
    assert table.splitlines()[1] == "installed: hello 1"


# --- cpk shell and cpk exec ---------------------------------------------------------


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh", "fish"])
def test_cpk_shell_enters_the_env_and_leaves_the_parent_untouched(
    tmp_path: Path, shell: str
) -> None:
    _need(shell)
    install("default", "cpkprobe", "1.6")
    alias = Profile("default", home()).alias
    parent = _shell_env(SHELL="/bin/sh")
    snapshot = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", "shell", "default", "--shell", shell],
        input="command -v cpkprobe\necho $CPK_ENV\ncpkprobe\nexit 3\n",
        env=parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout.splitlines() == [
        f"{alias}/bin/cpkprobe",
        str(alias),
        "cpkprobe 1.6 payload-1.6",
    ]
    assert proc.returncode == 3  # the subshell's own status
    # Nothing leaked back: this process, and a process started after, have none of it.
    assert dict(os.environ) == snapshot
    after = subprocess.run(
        ["/bin/sh", "-c", 'echo "[$CPK_ENV]"; command -v cpkprobe || echo none'],
        env=parent, capture_output=True, text=True,
    )  # fmt: skip
    assert after.stdout.splitlines() == ["[]", "none"]


def test_cpk_shell_with_an_env_dir_uses_SHELL(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    add_program(env_dir, "hello", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", "shell", str(env_dir)],
        input='hello\necho "$CPK_ENV"\n',
        env=_shell_env(SHELL="/bin/sh"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hello 1 payload-1", str(env_dir)]


def test_cpk_exec_runs_in_the_env_and_propagates_the_status(tmp_path: Path) -> None:
    install("default", "jq", "1.6")
    proc = run_cpk("exec", "default", "--", "jq", env=_shell_env())
    assert (proc.returncode, proc.stdout) == (0, "jq 1.6 payload-1.6\n")
    failing = run_cpk("exec", "default", "--", "jq", env=_shell_env(**{exit_var("jq"): "5"}))
    assert failing.returncode == 5 and failing.stdout == "jq 1.6 payload-1.6\n"
    shown = run_cpk("exec", "default", "sh", "-c", 'echo "$CPK_ENV"', env=_shell_env())
    assert shown.stdout.strip() == str(Profile("default", home()).alias)
    missing = run_cpk("exec", "default", "--", "no-such-program")
    assert missing.returncode == 127
    assert missing.stderr.startswith("cpk: error: no-such-program: command not found in ")
    nothing = run_cpk("exec", "default", "--")
    assert nothing.returncode == 1
    assert nothing.stderr == "cpk: error: exec: name a command to run (cpk exec ENV -- CMD...)\n"


def test_a_profile_switch_shows_through_a_running_binding() -> None:
    """PATH names the alias, not a generation: a shell set up before a switch sees it."""
    install("default", "jq", "1.6")
    child = apply(open_env("default", home()).bindings, _shell_env())
    install("default", "jq", "1.7")
    out = subprocess.run(["jq"], env=child, capture_output=True, text=True).stdout
    assert out == "jq 1.7 payload-1.7\n"


# --- requirements and errors ---------------------------------------------------------


def test_missing_plain_file_is_reported_with_the_search_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The XDG search starts at $XDG_DATA_HOME, else $HOME/.local/share: pin
    # the default, or a caller's own XDG_DATA_HOME (set in many desktop
    # sessions and CI images) decides what this test expects.
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    env_dir = tmp_path / "env"
    requires = [
        {"namespace": "XDG_DATA_DIRS", "path": "hello/payload"},  # the env has it
        {"namespace": "XDG_DATA_DIRS", "path": "hello/schema.xml"},
        {"namespace": "MANPATH", "path": "man5/hello.conf.5"},
        {"namespace": "PATH", "path": "sh"},  # the system has it
    ]
    add_program(env_dir, "hello", "1", requires=requires)
    env = _shell_env(XDG_DATA_DIRS="/opt/a:/opt/b", HOME=str(tmp_path / "home"))
    missing = check_requirements(load(env_dir), env)
    assert [(m.namespace, m.path) for m in missing] == [
        ("XDG_DATA_DIRS", "hello/schema.xml"),
        ("MANPATH", "man5/hello.conf.5"),
    ]
    xdg = missing[0]
    assert xdg.searched == (f"{tmp_path}/home/.local/share", f"{env_dir}/share", "/opt/a", "/opt/b")
    assert xdg.message() == (
        f"hello 1 requires 'hello/schema.xml' on XDG_DATA_DIRS, not found in "
        f"{tmp_path}/home/.local/share:{env_dir}/share:/opt/a:/opt/b"
    )
    assert f"{env_dir}/share/man" in missing[1].searched

    proc = run_cpk("env", "--check", "--shell", "bash", env_dir, env=env)
    assert proc.returncode == 1
    warnings = proc.stderr.splitlines()
    assert warnings[0] == f"cpk: warning: {xdg.message()}"
    assert warnings[1].startswith("cpk: warning: hello 1 requires 'man5/hello.conf.5' on MANPATH")
    assert "export PATH=" in proc.stdout  # still printed: the rest of the env works
    assert run_cpk("env", "--shell", "bash", env_dir, env=env).returncode == 0

    # Once some directory on the path holds it, the complaint goes.
    (tmp_path / "home/.local/share/hello").mkdir(parents=True)
    (tmp_path / "home/.local/share/hello/schema.xml").write_text("<schema/>")
    assert [m.path for m in check_requirements(load(env_dir), env)] == ["man5/hello.conf.5"]


def test_environment_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad/.cpk").mkdir(parents=True)
    (tmp_path / "bad/.cpk/manifest.json").write_text("{not json")
    (tmp_path / "default").mkdir()
    for args, message in [
        (("env",), "no profile named 'default' (there are no profiles yet)"),
        (
            ("env", str(tmp_path / "plain")),
            f"{tmp_path}/plain: not an env dir (no .cpk/manifest.json)",
        ),
        (("env", str(tmp_path / "gone")), f"{tmp_path}/gone: not an env dir (no such directory)"),
        (("exec", "nosuch", "--", "true"), "no profile named 'nosuch' (there are no profiles yet)"),
        (("shell", "a/b/c"), f"{Path.cwd()}/a/b/c: not an env dir (no such directory)"),
        (("env", "default"), "no profile named 'default'; for the directory, write ./default"),
    ]:
        proc = run_cpk(*args, cwd=tmp_path)
        assert proc.returncode == 1, args
        expected = message.replace(f"{Path.cwd()}/", f"{tmp_path}/")
        assert proc.stderr == f"cpk: error: {expected}\n", args
    proc = run_cpk("env", tmp_path / "bad")
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"cpk: error: {tmp_path}/bad/.cpk/manifest.json: malformed JSON")
    with pytest.raises(CpkError, match="unknown shell"):
        render(load(_make(tmp_path / "ok")), "csh")


def _make(path: Path) -> Path:
    add_program(path, "hello", "1")
    return path


def test_cli_offers_exactly_the_shells_bindings_renders() -> None:
    import ast
    import inspect

    from contentpkg.cli import parser
    from contentpkg.env.bindings import SHELLS

    lines = inspect.getsource(parser).splitlines()
    line = next(x for x in lines if x.strip().startswith("SHELLS ="))
    assert ast.literal_eval(line.split("=", 1)[1].strip()) == tuple(SHELLS)
