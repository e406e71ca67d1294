"""How a view is made and how its interpreter imports (issue 16).

The mechanisms, not the times: a view's symlinks are hard links to one
shared symlink per target (so a second view writes no symlink inode), and
the view's import finder answers from directory listings read once, with
the paths, loaders and specs the standard finder gives, in fewer system
calls than the standard finder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.wheels import make_wheel

from contentpkg.python.envs.links import LINKS
from contentpkg.python.envs.views import FINDER, ensure_view
from contentpkg.python.install.wheel import add_wheel
from contentpkg.python.interpreter import interpreter_info
from contentpkg.store import Entry, Store


def _entries(tmp_path: Path) -> list[Entry]:
    store = Store.open()
    wheels = [
        make_wheel(
            tmp_path / "dists",
            "alpha",
            "1.0",
            files={
                "alpha/__init__.py": "VALUE = 1\n",
                "alpha/sub/__init__.py": "",
                "alpha/sub/mod.py": "NAME = 'mod'\n",
                "alpha/data.txt": "hello\n",
            },
            entry_points={"console_scripts": {"alpha-tool": "alpha:main"}},
        ),
        make_wheel(tmp_path / "dists", "beta", "1.0", files={"beta.py": "B = 2\n"}),
        make_wheel(tmp_path / "dists", "gamma", "1.0", files={"gamma/__init__.py": ""}),
    ]
    return [add_wheel(store, w).entry for w in wheels]


def _symlinks(root: Path) -> list[Path]:
    return [
        Path(d) / n
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if os.path.islink(os.path.join(d, n))
    ]


def test_a_second_view_makes_no_symlink_inode(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    store = Store.open()
    pool = store.home / LINKS
    # Adding a wheel made the symlinks its views will hold.
    made_at_add = set(os.listdir(pool))
    for entry in entries:
        for name in os.listdir(entry.path / "site-packages"):
            target = os.fspath(entry.path / "site-packages" / name)
            assert any(os.readlink(pool / n) == target for n in made_at_add if n[:2] != "f-")
    python = interpreter_info()
    first = ensure_view(store, entries, python)
    after_first = set(os.listdir(pool))
    second = ensure_view(store, list(reversed(entries)), python)
    assert second.path != first.path
    # The second view added no symlink to the pool: every link it holds was
    # there. (Only its own files, by their bytes, and its plan are new.)
    added = set(os.listdir(pool)) - after_first
    assert {n for n in added if n[:2] not in ("f-", "v-")} == set()
    links = _symlinks(second.path)
    assert links, "a view of links"
    for link in links:
        st = os.lstat(link)
        # One inode shared with the pool and the first view, never a new symlink.
        assert st.st_nlink >= 3, (link, st.st_nlink)
    shared = os.lstat(second.site_packages / "alpha")
    assert shared.st_ino == os.lstat(first.site_packages / "alpha").st_ino
    # And it is an ordinary view to the interpreter.
    probe = "import alpha.sub.mod, beta, gamma; print(alpha.sub.mod.NAME, beta.B)"
    done = subprocess.run(
        [os.fspath(second.python_path), "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["mod", "2"]


PROBE = r"""
import importlib, json, sys
import alpha.sub.mod, beta, gamma
out = {}
for name in ("alpha", "alpha.sub", "alpha.sub.mod", "beta", "gamma"):
    m = sys.modules[name]
    out[name] = [m.__file__, getattr(m, "__path__", None) and list(m.__path__),
                 type(m.__spec__.loader).__name__, m.__spec__.origin]
site = [p for p in sys.path if p.endswith("site-packages")][-1]
out["finders"] = sorted({type(sys.path_importer_cache[p]).__name__
                         for p in sys.path_importer_cache if p.startswith(site)})
print(json.dumps(out))
"""


def _probe(python: Path, *flags: str, site: Path | None = None) -> dict:
    code = PROBE if site is None else f"import sys; sys.path.append({os.fspath(site)!r})\n" + PROBE
    done = subprocess.run(
        [os.fspath(python), *flags, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_the_view_finder_gives_the_standard_answers(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    view = ensure_view(Store.open(), entries, interpreter_info())
    ours = _probe(view.python_path)
    assert ours.pop("finders") == ["ViewFinder"]
    # -S: no site, so no .pth and no finder; the same directory on sys.path.
    standard = _probe(view.python_path, "-S", site=view.site_packages)
    assert standard.pop("finders") == ["FileFinder"]
    assert ours == standard
    assert ours["alpha"][0] == os.fspath(view.site_packages / "alpha" / "__init__.py")
    assert ours["alpha.sub.mod"][2] == "SourceFileLoader"


def test_the_view_finder_sees_what_is_added_to_site_packages(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    view = ensure_view(Store.open(), entries, interpreter_info())
    added = view.site_packages / "late_module.py"
    code = (
        "import beta, importlib\n"  # the finder has listed site-packages
        f"open({os.fspath(added)!r}, 'w').write('X = 3')\n"
        "import late_module; print(late_module.X)\n"
    )
    done = subprocess.run([os.fspath(view.python_path), "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "3", done.stderr


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_view_finder_makes_fewer_system_calls(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    view = ensure_view(Store.open(), entries, interpreter_info())
    script = "import alpha.sub.mod, beta, gamma\n"

    def path_calls(*args: str) -> int:
        log = tmp_path / "strace.log"
        subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=%file", "-o", os.fspath(log),
             os.fspath(view.python_path), *args],
            check=True, capture_output=True,
        )  # fmt: skip
        return sum(os.fspath(view.site_packages) in line for line in log.read_text().splitlines())

    with_finder = path_calls("-c", script)
    standard = path_calls(
        "-S", "-c", f"import sys; sys.path.append({os.fspath(view.site_packages)!r})\n" + script
    )
    # FileFinder stats each directory per lookup and each candidate __init__;
    # the finder lists each directory once. Every path call into the view counts.
    assert 0 < with_finder < standard, (with_finder, standard)


def test_the_finder_file_is_shared_and_read_only(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    view = ensure_view(Store.open(), entries, interpreter_info())
    module = view.site_packages / f"{FINDER}.py"
    st = module.stat()
    assert st.st_nlink >= 2 and not st.st_mode & 0o222
    assert (view.site_packages / f"{FINDER}.pth").read_text().startswith(f"import {FINDER};")
    if sys.implementation.cache_tag:
        pyc = view.site_packages / "__pycache__" / f"{FINDER}.{sys.implementation.cache_tag}.pyc"
        # Unchecked-hash bytecode (PEP 552): never compared with a source.
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01


def test_tools_work_in_a_view(tmp_path: Path) -> None:
    """pytest (its rootdir, its assertion rewriting through the view's
    finder), coverage.py and console scripts, from entries made of this
    machine's own installed distributions."""
    from support.backends import wheel_of_installed

    store = Store.open()
    entries = []
    for name in ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "coverage"):
        wheel = wheel_of_installed(tmp_path / "dists", name)
        if wheel is None:
            pytest.skip(f"{name} is not installed here")
        entries.append(add_wheel(store, wheel).entry)
    entries += _entries(tmp_path)
    view = ensure_view(store, entries, interpreter_info())
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (project / "tests" / "test_it.py").write_text(
        "import alpha.sub.mod\n\ndef f():\n    return 2\n\n"
        "def test_mod():\n    assert alpha.sub.mod.NAME == 'mod'\n\n"
        "def test_rewritten():\n    assert f() == 3\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [os.fspath(view.bin_dir / "pytest"), "-p", "no:cacheprovider", "tests"],
        cwd=project, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"rootdir: {project}" in done.stdout
    assert "1 failed, 1 passed" in done.stdout
    assert "where 2 = f()" in done.stdout  # the assertion was rewritten
    coverage = os.fspath(view.bin_dir / "coverage")
    subprocess.run(
        [coverage, "run", "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests"],
        cwd=project, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    report = subprocess.run(
        [coverage, "report"], cwd=project, capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "tests/test_it.py" in report and "100%" in report, report


def test_the_finder_is_compiled_once_for_every_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled finder is pooled by what it is made from: a second view
    links the same inode and compiles nothing."""
    import contentpkg.python.envs.views as views

    if not sys.implementation.cache_tag:
        pytest.skip("this interpreter writes no bytecode")
    compiled: list[bytes] = []
    real = views._unchecked_pyc
    monkeypatch.setattr(views, "_unchecked_pyc", lambda s: compiled.append(s) or real(s))
    entries = _entries(tmp_path)
    store, python = Store.open(), interpreter_info()
    first = ensure_view(store, entries, python)
    second = ensure_view(store, list(reversed(entries)), python)
    assert len(compiled) == 1
    name = f"__pycache__/{FINDER}.{sys.implementation.cache_tag}.pyc"
    one, two = (os.stat(v.site_packages / name) for v in (first, second))
    assert one.st_ino == two.st_ino and one.st_nlink >= 3


def test_a_rewritten_record_keeps_the_wheels_rows_as_written(tmp_path: Path) -> None:
    """A distribution with scripts gets its own RECORD in the view: the
    wheel's rows copied line for line, its ``.data`` rows moved to where the
    view put them, the scripts added, as pip does."""
    import csv
    import io

    store = Store.open()
    wheel = make_wheel(
        tmp_path / "dists",
        "tooly",
        "1.0",
        files={"tooly/__init__.py": "def main():\n    pass\n"},
        entry_points={"console_scripts": {"tooly": "tooly:main"}},
        data={"data/share/tooly.txt": "shared\n"},
    )
    entry = add_wheel(store, wheel).entry
    view = ensure_view(store, [entry], interpreter_info())
    dist_info = next(p for p in view.site_packages.iterdir() if p.name.endswith(".dist-info"))
    assert not dist_info.is_symlink()  # its own directory: a rewritten RECORD
    source = entry.path / "site-packages" / dist_info.name / "RECORD"
    theirs = source.read_text(encoding="utf-8").splitlines()
    ours = (dist_info / "RECORD").read_text(encoding="utf-8")
    rows = {r[0]: r for r in csv.reader(io.StringIO(ours))}
    kept = [line for line in theirs if line.startswith("tooly/__init__.py,")]
    assert kept and kept[0] in ours.splitlines()
    assert "../../../share/tooly.txt" in rows
    script = rows["../../../bin/tooly"]
    assert script[1].startswith("sha256=") and script[2] == str(
        (view.bin_dir / "tooly").stat().st_size
    )
    assert list(rows)[-1] == f"{dist_info.name}/RECORD"
    # What importlib.metadata makes of it, in the view's own interpreter.
    probe = "import importlib.metadata as m; print(sorted(str(f) for f in m.files('tooly')))"
    done = subprocess.run(
        [os.fspath(view.python_path), "-c", probe], capture_output=True, text=True, check=True
    )
    assert "../../../bin/tooly" in done.stdout and "tooly/__init__.py" in done.stdout


def test_record_rows_with_quotes_go_through_csv() -> None:
    """Rows are copied as their own text only when the file has no quote;
    a quoted path (a comma in it) is read and written by ``csv``."""
    from contentpkg.python.envs.views import _record_line, _record_rows

    plain = "a/b.py,sha256=x,3\r\nc.py,sha256=y,4\n\n"
    assert _record_rows(plain) == [("a/b.py,sha256=x,3", "a/b.py"), ("c.py,sha256=y,4", "c.py")]
    quoted = 'a/b.py,sha256=x,3\n"a/x,y.txt",sha256=z,5\n'
    assert _record_rows(quoted) == [
        ("a/b.py,sha256=x,3", "a/b.py"),
        ('"a/x,y.txt",sha256=z,5', "a/x,y.txt"),
    ]
    odd = "a/x\u2028y.py,sha256=w,1\rb.py,sha256=v,2\n"  # a line separator inside a name
    assert _record_rows(odd) == [("a/x\u2028y.py,sha256=w,1", "a/x\u2028y.py"),
                                 ("b.py,sha256=v,2", "b.py")]  # fmt: skip
    assert _record_line(["../../../bin/t", "sha256=q", "9"]) == "../../../bin/t,sha256=q,9"
    assert _record_line(['we"ird,name', "", ""]) == '"we""ird,name",,'


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Each non-directory of a view: (its inode, its link count)."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if not os.path.isdir(path) or os.path.islink(path):
                st = os.lstat(path)
                out[os.path.relpath(path, root)] = (st.st_ino, st.st_nlink)
    return out


def test_a_view_is_made_of_pool_inodes_and_a_deleted_one_is_replayed(tmp_path: Path) -> None:
    """Every file of a view (symlinks, the finder, pyvenv.cfg, scripts,
    RECORDs, its own metadata) is a hard link to the pool; the plan the
    builder leaves in the pool makes a deleted view again by links alone:
    the same inodes, no entry metadata read, the plan not rewritten."""
    from contentpkg.fs import remove_tree
    from contentpkg.python.envs.replay import PLAN_PREFIX

    entries = _entries(tmp_path)
    store, python = Store.open(), interpreter_info()
    view = ensure_view(store, entries, python)
    files = _files(view.path)
    assert {"pyvenv.cfg", "bin/alpha-tool", ".cpk/view.json", ".cpk/refs"} <= set(files)
    # No file of its own: each is an inode the pool holds too.
    assert all(nlink >= 2 for _, nlink in files.values()), files
    assert os.access(view.bin_dir / "alpha-tool", os.X_OK)
    plan = store.home / LINKS / f"{PLAN_PREFIX}{view.path.name}"
    planned = plan.stat()
    remove_tree(view.path)
    # Fresh entries: the builder reads each one's metadata first (its kind,
    # its scripts), which an entry caches in its dict once read.
    fresh = [Entry(e.path, e.name, e.version, e.short_hash, e.layer) for e in entries]
    again = ensure_view(store, fresh, python)
    assert again.path == view.path and again.created
    assert not [e for e in fresh if "metadata" in vars(e)], "the builder ran"
    assert _files(again.path) == files
    assert (plan.stat().st_ino, plan.stat().st_mtime_ns) == (planned.st_ino, planned.st_mtime_ns)
    done = subprocess.run(
        [os.fspath(again.python_path), "-c", "import alpha.sub.mod, beta; print(beta.B)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "2"


def test_gc_removes_the_plan_of_a_view_that_is_gone(tmp_path: Path) -> None:
    """A plan goes with its view (and the pool files only that view linked)."""
    from contentpkg.fs import remove_tree
    from contentpkg.python.envs.links import PoolGarbage
    from contentpkg.python.envs.replay import PLAN_PREFIX

    entries = _entries(tmp_path)
    store = Store.open()
    view = ensure_view(store, entries, interpreter_info())
    pool = store.home / LINKS
    plan = pool / f"{PLAN_PREFIX}{view.path.name}"
    script = os.stat(view.bin_dir / "alpha-tool").st_ino
    (own,) = (p for p in pool.iterdir() if p.stat().st_ino == script)
    assert plan not in PoolGarbage().doomed(store, [])
    remove_tree(view.path)
    doomed = PoolGarbage().doomed(store, [])
    assert plan in doomed and own in doomed


def test_the_replay_takes_the_collector_lock_and_says_durations_as_everyone(
    tmp_path: Path,
) -> None:
    """What the replay writes out again to avoid imports stays equal to the
    original: the collector lock's file and the summary's duration."""
    from contentpkg.progress import elapsed
    from contentpkg.python.envs.rebuild import _elapsed
    from contentpkg.python.envs.replay import COLLECTOR_LOCK
    from contentpkg.store.locks import collector_lock

    with collector_lock(tmp_path):
        assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()] == [
            COLLECTOR_LOCK
        ]
    for seconds in (0.0004, 0.0126, 0.5, 0.9994, 1.0, 2.25, 75.0):
        assert _elapsed(seconds) == elapsed(seconds)


def test_a_plan_is_replayed_only_by_the_builder_that_made_it(tmp_path: Path) -> None:
    """Some of a view's bytes come from cpk's own code (the finder, script
    launchers): a plan recorded by other builder code, or one that is
    malformed, is not replayed; the builder makes the view and a new plan."""
    import marshal

    from contentpkg.fs import remove_tree
    from contentpkg.python.envs import replay

    entries = _entries(tmp_path)
    store, python = Store.open(), interpreter_info()
    view = ensure_view(store, entries, python)
    plan_file = store.home / LINKS / f"{replay.PLAN_PREFIX}{view.path.name}"
    paths = [os.fspath(e.path) for e in entries]
    pool = os.fspath(store.home / LINKS)
    assert replay.load(pool, view.path.name, paths) is not None
    plan = marshal.loads(plan_file.read_bytes())
    for broken in (
        {**plan, "builder": [("views.py", 1, 1)]},  # another cpk's builder
        {k: v for k, v in plan.items() if k != "ops"},
        {**plan, "conflicts": None},
    ):
        plan_file.chmod(0o644)
        plan_file.write_bytes(marshal.dumps(broken))
        assert replay.load(pool, view.path.name, paths) is None
        remove_tree(view.path)
        fresh = [Entry(e.path, e.name, e.version, e.short_hash, e.layer) for e in entries]
        again = ensure_view(store, fresh, python)
        assert [e for e in fresh if "metadata" in vars(e)], "the builder did not run"
        assert again.path == view.path
        assert replay.load(pool, view.path.name, paths) is not None  # a plan of its own


def test_gc_removes_a_view_staged_by_a_process_that_is_gone(tmp_path: Path) -> None:
    """A builder killed between staging and publishing leaves a staged view
    whose hard links would pin pool files for ever; gc removes it once its
    process is gone, and leaves a live builder's alone."""
    from contentpkg.namespaces import registry
    from contentpkg.store.gc import collect

    entries = _entries(tmp_path)
    store = Store.open()
    view = ensure_view(store, entries, interpreter_info())
    child = subprocess.Popen(["true"])
    child.wait()
    staged_dead = view.path.parent / f".tmp-{view.path.name}.{child.pid}.0123abcd"
    staged_live = view.path.parent / f".tmp-{view.path.name}.{os.getpid()}.0123abcd"
    for staged in (staged_dead, staged_live):
        staged.mkdir()
        os.link(view.path / "pyvenv.cfg", staged / "pyvenv.cfg")
    collect(store, registry())
    assert not staged_dead.exists()
    assert (staged_live / "pyvenv.cfg").is_file()
