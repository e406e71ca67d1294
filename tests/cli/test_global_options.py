"""The global options on every command, summary lines off a terminal, -q, -v,
--directory, -V, CPK_HTTP_* and help: through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_sdist, make_wheel

from contentpkg import __version__
from contentpkg.cli.examples import EXAMPLES
from contentpkg.cli.parser import build_parser
from contentpkg.cli.shells import _subparsers


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(root, "app-lib", "1.0", requires_dist=["helper>=1", "from-source"])
    make_wheel(root, "helper", "1.0")
    make_sdist(root, "from-source", "0.5")
    with LocalIndex(root) as served:
        yield served


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\ndependencies = ["app-lib"]\n'
    )
    return root


def test_a_cold_run_into_a_pipe_prints_summary_lines(proj: Path, index: LocalIndex) -> None:
    cold = run_cpk("run", "--index-url", index.url, "python", "-c", "print('ran')", cwd=proj)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout == "ran\n"
    lines = cold.stderr.splitlines()
    assert re.fullmatch(r"Resolved 3 packages in \d+(ms|\.\ds)", lines[0]), lines
    assert any(re.fullmatch(r"Built from-source 0\.5 in \d+(ms|\.\ds)", x) for x in lines)
    # Two wheels and the sdist built: 3 downloads, their bytes counted.
    assert any(re.fullmatch(r"Fetched 3 packages \(\d.+ (B|KiB)\) in .+", x) for x in lines)
    assert re.fullmatch(r"Composed environment in \d+(ms|\.\ds)", lines[-1]), lines
    # Warm: nothing is made, nothing is said.
    warm = run_cpk("run", "--index-url", index.url, "python", "-c", "pass", cwd=proj)
    assert warm.stderr == ""


def test_quiet_silences_summaries_before_or_after_the_command(
    proj: Path, index: LocalIndex, tmp_path: Path
) -> None:
    before = run_cpk("-q", "sync", "--index-url", index.url, cwd=proj, check=True)
    assert (before.stdout, before.stderr) == ("", "")
    (proj / "pylock.toml").unlink()
    after = run_cpk("lock", "--index-url", index.url, "-q", cwd=proj, check=True)
    assert after.stderr == ""
    loud = run_cpk("lock", "--upgrade", "--index-url", index.url, cwd=proj, check=True)
    assert "Resolved 3 packages" in loud.stderr


def test_quiet_before_run_still_takes_the_memo(proj: Path, index: LocalIndex) -> None:
    run_cpk("run", "--index-url", index.url, "python", "-c", "pass", cwd=proj, check=True)
    warm = run_cpk(
        "-q",
        "run",
        "--index-url",
        index.url,
        "python",
        "-X",
        "importtime",
        "-c",
        "pass",
        cwd=proj,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert warm.returncode == 0, warm.stderr
    # The memo's path imports neither the parser nor the resolver.
    assert "contentpkg.python.run.memo" in warm.stderr
    assert "contentpkg.cli.parser" not in warm.stderr
    assert "resolvelib" not in warm.stderr


def test_verbose_says_where_entries_and_pages_came_from(proj: Path, index: LocalIndex) -> None:
    run_cpk("sync", "--index-url", index.url, cwd=proj, check=True)
    (proj / "pylock.toml").unlink()
    verbose = run_cpk("-v", "sync", "--index-url", index.url, cwd=proj, check=True)
    assert "cpk: debug: helper 1.0: in the user store" in verbose.stderr
    assert re.search(r"cpk: debug: helper: \d+ files from http://127\.0\.0\.1", verbose.stderr)
    quiet = run_cpk("sync", "--index-url", index.url, cwd=proj, check=True)
    assert "debug" not in quiet.stderr


def test_directory_and_version(proj: Path, index: LocalIndex, tmp_path: Path) -> None:
    run_cpk("--directory", proj, "lock", "--index-url", index.url, cwd=tmp_path, check=True)
    assert (proj / "pylock.toml").is_file()
    (proj / "pylock.toml").unlink()
    run_cpk("lock", "--directory", proj, "--index-url", index.url, cwd=tmp_path, check=True)
    assert (proj / "pylock.toml").is_file()
    missing = run_cpk("--directory", tmp_path / "nowhere", "store", "ls")
    assert missing.returncode == 2
    assert (
        missing.stderr
        == f"cpk: error: --directory {tmp_path / 'nowhere'}: No such file or directory\n"
    )
    # The same before run, which changes directory before the memo decides.
    for_run = run_cpk("--directory", tmp_path / "nowhere", "run", "python", cwd=tmp_path)
    assert (for_run.returncode, for_run.stderr) == (2, missing.stderr)
    for args in (["-V"], ["--version"], ["store", "ls", "-V"], ["sync", "--version"]):
        assert run_cpk(*args, check=True).stdout == f"cpk {__version__}\n"


def test_no_cache_leaves_the_cache_empty(proj: Path, index: LocalIndex, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"CPK_CACHE_DIR": str(cache)}
    run_cpk("--no-cache", "sync", "--index-url", index.url, cwd=proj, env=env, check=True)
    assert not cache.exists() or list(cache.iterdir()) == []
    # The store was used all the same: offline, the sync needs nothing more.
    again = run_cpk("sync", "--offline", "--frozen", cwd=proj, env=env, check=True)
    assert "3 packages in the store: 0 fetched, 0 built, 3 already present" in again.stderr


def test_http_settings_come_from_the_environment(proj: Path) -> None:
    bad = run_cpk("store", "ls", env={"CPK_HTTP_TIMEOUT": "soon"})
    assert bad.returncode == 2
    assert bad.stderr == "cpk: error: CPK_HTTP_TIMEOUT='soon': expected a non-negative float\n"
    helped = run_cpk("--help", check=True).stdout
    assert "CPK_HTTP_TIMEOUT" in helped and "(default 30)" in helped
    assert "CPK_HTTP_RETRIES" in helped and "(default 3)" in helped


def test_color_follows_the_option_and_no_color(tmp_path: Path) -> None:
    plain = run_cpk("store", "path", "nothing")
    assert plain.stderr.startswith("cpk: error: ")
    forced = run_cpk("--color", "always", "store", "path", "nothing")
    assert forced.stderr.startswith("cpk: \x1b[31merror\x1b[0m: ")
    env = run_cpk("store", "path", "nothing", env={"FORCE_COLOR": "1"})
    assert "\x1b[31m" in env.stderr
    both = run_cpk("store", "path", "nothing", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in both.stderr
    never = run_cpk("store", "path", "nothing", "--color", "never", env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in never.stderr


def _commands(parser, prefix=()):
    for name, sub in _subparsers(parser).items():
        yield (*prefix, name), sub
        yield from _commands(sub, (*prefix, name))


def test_every_command_has_an_example_and_the_global_options() -> None:
    found = dict(_commands(build_parser()))
    assert {" ".join(k) for k in found} == set(EXAMPLES)
    for words, sub in found.items():
        text = sub.format_help()
        assert f"example: {EXAMPLES[' '.join(words)]}" in " ".join(text.split()), words
        for option in ("--quiet", "--verbose", "--color", "--directory", "--no-cache"):
            assert option in text, (words, option)


def test_help_command_prints_the_command_help() -> None:
    direct = run_cpk("store", "gc", "--help", check=True).stdout
    assert run_cpk("help", "store", "gc", check=True).stdout == direct
    bad = run_cpk("help", "frobnicate")
    assert bad.returncode == 1 and "no command 'frobnicate'" in bad.stderr


def _on_a_terminal(*args: str | Path, cwd: Path) -> str:
    """Run cpk with stderr on a pseudo-terminal; what it wrote there."""
    import os
    import subprocess
    import sys

    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contentpkg", *map(str, args)],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_no_progress_keeps_a_terminal_to_summary_lines(proj: Path, index: LocalIndex) -> None:
    bars = _on_a_terminal("sync", "--index-url", index.url, cwd=proj)
    assert "\x1b[?25l" in bars  # rich hides the cursor while it draws bars
    assert "Resolved 3 packages" in bars
    (proj / "pylock.toml").unlink()
    run_cpk("cache", "clean", check=True)
    run_cpk("store", "gc", check=True)
    plain = _on_a_terminal("sync", "--no-progress", "--index-url", index.url, cwd=proj)
    assert "\x1b[" not in plain
    assert "Resolved 3 packages" in plain and "Fetched 3 packages" in plain


def test_no_cache_run_leaves_no_temporary_cache(
    proj: Path, index: LocalIndex, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    args = ("--index-url", index.url, "python", "-c", "print('ran')")
    ran = run_cpk("--no-cache", "run", *args, cwd=proj, env=env, check=True)
    assert ran.stdout == "ran\n"
    # run execs the command: the temporary cache is removed before that.
    assert [p.name for p in scratch.iterdir() if p.name.startswith("cpk-no-cache-")] == []


def test_a_per_file_command_builds_only_its_own_group_of_commands() -> None:
    """``cpk ldd FILE`` runs once per file: its parser holds its group only,
    while a command line naming no known command still sees every command."""
    from contentpkg.cli.parser import build_parser

    def commands(parser: object) -> set[str]:
        action = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
        return set(action.choices)

    everything = commands(build_parser())
    assert {"ldd", "install", "store", "run", "lock"} <= everything
    assert commands(build_parser("install")) == {"install", "uninstall", "identify", "ldd"}
    assert commands(build_parser("ldd")) == {"ldd"}
    assert commands(build_parser("store")) == everything  # others add to its group
    assert commands(build_parser("--help")) == everything
    assert commands(build_parser("lddx")) == everything
    args = build_parser("ldd").parse_args(["-q", "ldd", "--json", "x"])
    assert (args.file, args.json, args.quiet) == ("x", True, True)


def test_the_project_commands_build_only_their_own_parser() -> None:
    """A no-op ``cpk lock`` (and ``sync``, ``run`` past the memo) should cost
    little more than the interpreter's start: its parser holds that command
    alone, and still parses every option it takes."""
    from contentpkg.cli.options import settle
    from contentpkg.cli.parser import build_parser

    def commands(parser: object) -> set[str]:
        action = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
        return set(action.choices)

    for name in ("lock", "sync", "fetch", "run", "shell"):
        assert commands(build_parser(name)) == {name}
    args = build_parser("lock").parse_args(
        ["-q", "lock", "-q", "--upgrade-package", "a", "--check"]
    )
    settle(args)
    assert (args.upgrade_package, args.check, args.quiet) == (["a"], True, 2)
    args = build_parser("sync").parse_args(["sync", "--frozen", "--group", "dev"])
    assert (args.frozen, args.group) == (True, ["dev"])


def test_a_command_built_alone_takes_every_option_it_takes_in_the_whole_parser() -> None:
    """Another group may add an option to a command (``run --union``): the
    parser built for that command alone must have it too."""
    from contentpkg.cli.parser import _ONE_GROUP, build_parser

    def options(parser: object, name: str) -> set[str]:
        action = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
        return {o for a in action.choices[name]._actions for o in a.option_strings}

    whole = build_parser()
    for name in _ONE_GROUP:
        assert options(build_parser(name), name) == options(whole, name), name
    assert "--union" in options(build_parser("run"), "run")
