"""Profiles: atomic generations, serialised changes, history, and gc roots."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.context import home
from support.envdirs import add_program, build_elf_program, install, read_manifest

from contentpkg.env import profiles
from contentpkg.env.profiles import (
    Profile,
    delete_generations,
    generations,
    link_tree,
    list_profiles,
    rollback,
    switch,
)
from contentpkg.errors import CpkError
from contentpkg.namespaces import registry
from contentpkg.store import Store
from contentpkg.store.add import add_path
from contentpkg.store.gc import collect

TESTS = Path(__file__).resolve().parents[1]


def _child_env() -> dict[str, str]:
    """The test's environment plus tests/ on sys.path, for helper processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start a helper process running code (with tests/ importable)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(prog: Path | str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(prog)], capture_output=True, text=True, env=env, check=True)
    return proc.stdout.strip()


# --- atomic switches ------------------------------------------------------------


READER = """
    import json, os, re, subprocess, sys
    alias_bin, stop = sys.argv[1], sys.argv[2]
    # Found through PATH and the alias, as a user's shell finds it.
    env = dict(os.environ, PATH=alias_bin + os.pathsep + os.environ["PATH"])
    runs, bad, seen = 0, [], set()
    while not os.path.exists(stop) or runs < 50:
        runs += 1
        try:
            proc = subprocess.run(["prog"], capture_output=True, text=True, env=env)
        except OSError as exc:  # not found on PATH: the alias was missing
            bad.append([None, "", str(exc)])
            continue
        m = re.fullmatch(r"prog (\\d+) payload-(\\d+)\\n", proc.stdout)
        if proc.returncode != 0 or not m or m.group(1) != m.group(2):
            bad.append([proc.returncode, proc.stdout, proc.stderr])
        else:
            seen.add(int(m.group(1)))
    print(json.dumps({"runs": runs, "bad": bad[:5], "nbad": len(bad), "seen": sorted(seen)}))
"""

WRITER = """
    import pathlib, subprocess, sys
    from support.context import home
    from support.envdirs import install
    program = pathlib.Path(sys.argv[1])
    from contentpkg.env.profiles import Profile, rollback
    prog = Profile("default", home()).alias / "bin" / "prog"

    def answer():
        return subprocess.run([prog], capture_output=True, text=True, check=True).stdout.split()

    switches = 0
    for version in range(1, 51):
        install("default", "prog", str(version), executable=program)
        switches += 1
        assert answer()[1] == str(version), answer()
        rollback("default", home=home())
        switches += 1
        # After a rollback the previous version answers.
        assert answer()[1] == str(version - 1), (version, answer())
    print(switches)
"""


def test_reader_never_sees_a_missing_or_half_built_environment(tmp_path: Path) -> None:
    # An ELF program, as env dirs hold: it finds its data beside its real
    # path, so any mixture of two generations would show in its answer.
    program = build_elf_program(tmp_path / "prog")
    install("default", "prog", "0", executable=program)
    alias = Profile("default", home()).alias
    stop = tmp_path / "stop"
    reader = _python(READER, str(alias / "bin"), str(stop))
    writer = _python(WRITER, str(program))
    w_out, w_err = writer.communicate(timeout=240)
    stop.touch()
    r_out, r_err = reader.communicate(timeout=60)
    assert writer.returncode == 0, w_err
    assert w_out.strip() == "100"  # 50 upgrades and 50 rollbacks
    assert reader.returncode == 0, r_err
    result = json.loads(r_out)
    assert result["nbad"] == 0, result["bad"]
    assert result["runs"] >= 50
    assert len(result["seen"]) > 1, result  # it really ran across switches
    # 51 generations, the alias still relative, the last rollback current.
    gens = generations("default", home=home())
    assert [g.number for g in gens] == list(range(1, 52))
    assert os.readlink(alias) == "default.gens/50"
    assert _run(alias / "bin" / "prog") == "prog 49 payload-49"


def test_transaction_that_fails_changes_nothing() -> None:
    install("default", "one", "1")
    profile = Profile("default", home())
    before = os.readlink(profile.alias)
    with pytest.raises(RuntimeError), profile.begin("broken") as tx:
        link_tree(tx.previous, tx.path)  # type: ignore[arg-type]
        add_program(tx.path, "two", "1")
        staging = tx.path
        raise RuntimeError("builder failed")
    assert not staging.exists()
    assert os.readlink(profile.alias) == before
    assert profile.numbers() == [1]
    # discard(): a no-op install leaves no generation either.
    with profile.begin("nothing to do") as tx:
        tx.discard()
    assert profile.numbers() == [1] and not tx.path.exists()
    assert not [n for n in os.listdir(profile.gens) if n.startswith(".staging")]


def test_killed_installer_leaves_debris_that_the_next_one_removes(tmp_path: Path) -> None:
    install("default", "one", "1")
    ready = tmp_path / "ready"
    child = _python(f"""
        import pathlib, time
        from support.context import home
        from support.envdirs import add_program
        from contentpkg.env.profiles import Profile
        with Profile("default", home()).begin("doomed") as tx:
            add_program(tx.path, "doomed", "1")
            pathlib.Path({str(ready)!r}).write_text(str(tx.path))
            time.sleep(60)
    """)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    staging = Path(ready.read_text())
    assert staging.is_dir()  # debris: the generation was never published
    assert Profile("default", home()).numbers() == [1]
    install("default", "two", "1")
    assert not staging.exists()
    names = {i["name"] for i in read_manifest(Profile("default", home()).alias)["installed"]}
    assert names == {"one", "two"}


def test_concurrent_installs_lose_nothing(tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [
        _python(f"""
            import os, time
            from support.envdirs import install
            while not os.path.exists({str(go)!r}):
                time.sleep(0.005)
            install("default", "p{i}", "1.{i}")
        """)
        for i in range(8)
    ]
    time.sleep(0.5)  # let them all reach the start line
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    profile = Profile("default", home())
    assert profile.numbers() == list(range(1, 9))
    installed = read_manifest(profile.alias)["installed"]
    assert sorted(i["name"] for i in installed) == [f"p{i}" for i in range(8)]
    for i in range(8):
        assert _run(profile.alias / "bin" / f"p{i}") == f"p{i} 1.{i} payload-1.{i}"
    # Each generation added exactly one program to the one before it.
    counts = [len(read_manifest(g.path)["installed"]) for g in generations("default", home=home())]
    assert counts == list(range(1, 9))


# --- history, switch, rollback, delete ------------------------------------------


def test_history_switch_rollback_and_delete(cpk_home: Path) -> None:
    install("default", "hello", "2.12")
    install("default", "jq", "1.6")
    install("default", "jq", "1.7")
    gens = generations("default", home=home())
    assert [(g.number, g.current) for g in gens] == [(1, False), (2, False), (3, True)]
    assert [g.changes for g in gens] == [("+hello 2.12",), ("+jq 1.6",), ("jq 1.6 → 1.7",)]
    assert gens[0].description == "install hello" and gens[0].command == "cpk install hello"
    assert gens[0].created.tzinfo is not None
    meta = json.loads((gens[2].path / ".cpk" / "generation.json").read_text())
    assert meta["number"] == 3 and meta["previous"] == 2 and meta["created"].endswith("Z")
    assert list_profiles(home()) == ["default"]

    assert rollback("default", home=home()) == (3, 2)
    assert _run(Profile("default", home()).alias / "bin" / "jq") == "jq 1.6 payload-1.6"
    assert switch("default", 3, home=home()) == 2
    assert _run(Profile("default", home()).alias / "bin" / "jq") == "jq 1.7 payload-1.7"
    assert switch("default", 1, home=home()) == 3
    with pytest.raises(CpkError, match="no generation older than 1"):
        rollback("default", home=home())
    with pytest.raises(CpkError, match=r"has no generation 7 \(generations: 1, 2, 3\)"):
        switch("default", 7, home=home())
    with pytest.raises(CpkError, match=r"refusing to delete generation 1 .* current"):
        delete_generations("default", [2, 1], home=home())
    assert Profile("default", home()).numbers() == [1, 2, 3]  # nothing went
    assert delete_generations("default", [2], home=home()) == [2]
    assert Profile("default", home()).numbers() == [1, 3]
    # A new generation is numbered after the newest, whatever is current.
    install("default", "tree", "2.0")
    assert Profile("default", home()).numbers() == [1, 3, 4]
    assert [g.changes for g in generations("default", home=home())][-1] == ("+tree 2.0",)


def test_delete_older_than_keeps_the_current_one() -> None:
    for name in ("a", "b", "c", "d"):
        install("default", name, "1")
    now = datetime.now(UTC)
    for number, days in ((1, 40), (2, 35), (3, 1)):
        path = Profile("default", home()).gens / str(number) / ".cpk" / "generation.json"
        meta = json.loads(path.read_text())
        meta["created"] = (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        path.write_text(json.dumps(meta))
    switch("default", 2, home=home())
    assert delete_generations("default", older_than=timedelta(days=30), home=home()) == [1]
    assert Profile("default", home()).numbers() == [2, 3, 4]
    assert delete_generations("default", older_than=timedelta(days=30), home=home()) == []


def test_cli_profile_commands_and_their_errors(cpk_home: Path) -> None:
    proc = run_cpk("profile", "generations")
    assert proc.returncode == 1
    assert proc.stderr == "cpk: error: no profile named 'default' (there are no profiles yet)\n"
    install("default", "hello", "2.12")
    install("default", "jq", "1.6")
    install("default", "jq", "1.7")
    install("work", "jq", "1.5")

    assert run_cpk("profile", "rollback").returncode == 0
    out = run_cpk("profile", "generations", check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 3
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"   1   {date}   install hello   \+hello 2\.12", lines[0]), out
    assert re.fullmatch(rf"   2   {date}   install jq      \+jq 1\.6        \(current\)", lines[1])
    assert re.fullmatch(rf"   3   {date}   install jq      jq 1\.6 → 1\.7", lines[2]), out
    data = json.loads(run_cpk("profile", "generations", "--json", check=True).stdout)
    assert [g["current"] for g in data] == [False, True, False]

    listing = run_cpk("profile", "list", check=True).stdout.splitlines()
    assert listing[0].split() == ["PROFILE", "CURRENT", "GENERATIONS", "SINCE", "DESCRIPTION"]
    assert listing[1].split()[:3] == ["default", "2", "3"]
    assert listing[2].split()[:3] == ["work", "1", "1"]

    switched = run_cpk("profile", "switch", "3")
    assert switched.stderr == "profile default: switched from generation 2 to 3\n"
    for args, message in [
        (
            ("profile", "switch", "9"),
            "profile 'default' has no generation 9 (generations: 1, 2, 3)",
        ),
        (
            ("profile", "rollback", "work"),
            "profile 'work' has no generation older than 1 to roll back to",
        ),
        (("profile", "generations", "nope"), "no profile named 'nope' (profiles: default, work)"),
        (
            ("profile", "delete-generations", "3"),
            "refusing to delete generation 3 of profile 'default': it is the current one "
            "(switch or roll back first)",
        ),
        (
            ("profile", "delete-generations", "default", "5"),
            "profile 'default' has no generation 5 (generations: 1, 2, 3)",
        ),
        (
            ("profile", "delete-generations"),
            "delete-generations: name generation numbers or --older-than",
        ),
        (
            ("profile", "delete-generations", "--older-than", "soon"),
            "'soon': not an age (use a number and s, m, h, d or w, like 30d)",
        ),
        (
            ("profile", "generations", ".hidden"),
            "'.hidden': not a valid profile name (letters, digits and '._+@-', not all digits; "
            "no '/', no leading '.', not ending in '.gens')",
        ),
    ]:
        proc = run_cpk(*args)
        assert proc.returncode == 1, args
        assert proc.stderr == f"cpk: error: {message}\n", args
    deleted = run_cpk("profile", "delete-generations", "default", "1", "2")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted generations 1, 2" in deleted.stderr
    assert Profile("default", home()).numbers() == [3]


def test_profile_survives_moving_the_home(cpk_home: Path, tmp_path: Path) -> None:
    install("default", "hello", "1")
    moved = tmp_path / "moved-home"
    os.rename(cpk_home, moved)
    try:
        assert _run(moved / "profiles" / "default" / "bin" / "hello") == "hello 1 payload-1"
        assert generations("default", home=moved)[0].current
    finally:
        os.rename(moved, cpk_home)


def test_invalid_profile_names() -> None:
    for bad in ("", "a/b", ".x", "x.gens", "12", "has space", "../up"):
        with pytest.raises(CpkError, match="not a valid profile name"):
            Profile(bad, home())
    for good in ("default", "work-2", "py3.12", "me@host"):
        Profile(good, home())


# --- link_tree ------------------------------------------------------------------


def test_link_tree_shares_files_and_keeps_symlinks(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    add_program(src, "hello", "1")
    (src / ".cpk" / "generation.json").write_text("{}")
    dst = tmp_path / "dst"
    copied = link_tree(src, dst, exclude=lambda rel: rel == "share/man")
    assert copied == []
    a, b = src / "bin" / "hello-1", dst / "bin" / "hello-1"
    assert os.stat(a).st_ino == os.stat(b).st_ino
    assert os.readlink(dst / "bin" / "hello") == "hello-1"
    assert not (dst / "share" / "man").exists()
    assert not (dst / ".cpk" / "generation.json").exists()
    assert os.access(b, os.X_OK)

    # Across filesystems os.link fails with EXDEV: the file is copied.
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(profiles.os, "link", no_link)
    copied = link_tree(src, tmp_path / "dst2")
    assert "bin/hello-1" in copied
    assert (tmp_path / "dst2" / "bin" / "hello-1").read_text() == a.read_text()
    assert os.stat(tmp_path / "dst2" / "bin" / "hello-1").st_ino != os.stat(a).st_ino


# --- gc -------------------------------------------------------------------------


def _entry(tmp_path: Path, name: str) -> str:
    src = tmp_path / f"src-{name}"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / name).write_text(f"#!/bin/sh\necho {name}\n")
    return add_path(Store.open(), src, name, "1").entry.dirname


def test_gc_keeps_entries_of_every_generation_until_deleted(tmp_path: Path) -> None:
    store = Store.open()
    old, new, loose = (_entry(tmp_path, n) for n in ("old", "new", "loose"))
    install("default", "old", "1", entry=old)
    install("default", "new", "1", entry=new)
    with Profile("default", home()).begin("replace") as tx:  # the current drops 'old'
        add_program(tx.path, "new", "1", entry=new)

    report = collect(store, registry())
    assert [name for name, _ in report.removed] == [loose]
    assert store.entry(old) is not None and store.entry(new) is not None

    delete_generations("default", [1, 2], home=home())
    report = collect(store, registry())
    assert [name for name, _ in report.removed] == [old]
    assert store.entry(new) is not None
