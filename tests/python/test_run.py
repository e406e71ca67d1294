"""cpk run: the project's environment, composed from the store, exec'd into."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from support.backends import INTREE_BUILD_SYSTEM, add_intree_backend
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(
        root,
        "alpha",
        "1.0",
        requires_dist=["beta>=1"],
        entry_points={"console_scripts": {"alpha-tool": "alpha:main"}},
        files={"alpha/__init__.py": "def main():\n    print('alpha tool ran')\n"},
    )
    make_wheel(root, "beta", "1.0")
    make_wheel(root, "gamma", "1.0")
    with LocalIndex(root) as served:
        yield served


def project(tmp_path: Path, *deps: str, body: str = "") -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    listed = "".join(f'  "{d}",\n' for d in deps)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\ndependencies = [\n{listed}]\n{body}'
    )
    return root


def run(index: LocalIndex, root: Path, *command: str, **kw):
    return run_cpk("run", "--index-url", index.url, *command, cwd=root, **kw)


def test_run_imports_only_declared_dependencies(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    code = textwrap.dedent(
        """
        import importlib.util, sys
        import alpha, beta
        print(sys.prefix != sys.base_prefix)
        print(importlib.util.find_spec("gamma") is None)
        print(importlib.util.find_spec("pytest") is None)  # in the base interpreter only
        print(sum(p.endswith("site-packages") for p in sys.path))
        """
    )
    proc = run(index, root, "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    # No [build-system]: the project is not a package (as in uv), so it runs
    # in the shared view itself, with one site-packages.
    assert proc.stdout.split() == ["True", "True", "True", "1"]
    # Editors find it: .venv links to the environment.
    assert (root / ".venv").is_symlink()
    venv_python = root / ".venv" / "bin" / "python"
    out = subprocess.run(
        [venv_python, "-c", "import alpha; print('ok')"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"


def test_console_scripts_exit_status_and_the_project_itself(
    tmp_path: Path, index: LocalIndex
) -> None:
    body = '[project.scripts]\nproj-cli = "proj:cli"\n' + INTREE_BUILD_SYSTEM
    root = project(tmp_path, "alpha", body=body)
    # Built by its own backend, carried in the tree (backend-path).
    add_intree_backend(root)
    (root / "src" / "proj").mkdir(parents=True)
    (root / "src" / "proj" / "__init__.py").write_text(
        "def cli():\n    print('proj cli, editable')\n"
    )
    assert run(index, root, "alpha-tool").stdout.strip() == "alpha tool ran"
    assert run(index, root, "proj-cli").stdout.strip() == "proj cli, editable"
    # Editable: a change in the checkout is seen at once, without re-syncing.
    (root / "src" / "proj" / "__init__.py").write_text("def cli():\n    print('changed')\n")
    assert run(index, root, "proj-cli").stdout.strip() == "changed"
    meta = run(
        index,
        root,
        "python",
        "-c",
        "import importlib.metadata as m; print(m.version('proj'), m.version('alpha'))",
    )
    assert meta.stdout.split() == ["0.1", "1.0"]
    assert run(index, root, "python", "-c", "raise SystemExit(7)").returncode == 7
    killed = run(index, root, "python", "-c", "import os, signal; os.kill(os.getpid(), 15)")
    assert killed.returncode == -signal.SIGTERM


def test_subprocesses_and_spawn_see_the_same_environment(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    code = textwrap.dedent(
        """
        import multiprocessing as mp, subprocess, sys
        def probe(q):
            import beta
            q.put(beta.__version__)
        if __name__ == "__main__":
            out = subprocess.run([sys.executable, "-c", "import alpha; print(alpha.__file__)"],
                                 capture_output=True, text=True, check=True).stdout
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=probe, args=(q,))
            p.start(); p.join()
            print("subprocess", "alpha" in out, "spawn", q.get())
        """
    )
    (root / "probe.py").write_text(code)
    proc = run(index, root, "python", "probe.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "subprocess True spawn 1.0"


def _imported(importtime_log: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported, from its stderr."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            names.add(line.rsplit("|", 1)[-1].strip())
    # The log also lists optional imports that failed (``copy`` tries Jython's
    # ``org.python.core``): nothing was loaded for those.
    return {n for n in names if importlib.util.find_spec(n.split(".")[0]) is not None}


#: What a warm ``cpk run`` may load besides the standard library.
def _console_imports(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``cpk ARGS`` started as its console script starts it (``-m`` would load
    runpy, which loads modules itself), without site (whose .pth files here
    may load modules too): the process, and what it loaded beyond a bare
    interpreter, the hot path's modules, and os with what os loads (any
    command needs those; site loads them, -S does not)."""
    script = "import sys; from contentpkg.cli import main; sys.exit(main())"
    # Without site an editable install's finder is not there: point at the package.
    spec = importlib.util.find_spec("contentpkg")
    assert spec is not None and spec.origin is not None
    nosite = {**os.environ, "PYTHONPATH": str(Path(spec.origin).parent.parent)}
    bare = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", "pass"],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", script, *args],
        cwd=root, capture_output=True, text=True, timeout=120, env=nosite,
    )  # fmt: skip
    allowed = {"__future__", "os", "posixpath", "genericpath", "stat", "_stat", "_collections_abc"}
    return proc, _imported(proc.stderr) - _imported(bare.stderr) - HOT_PATH_MODULES - allowed


HOT_PATH_MODULES = {
    "contentpkg",
    "contentpkg.cli",
    "contentpkg.python",
    "contentpkg.python.run",
    "contentpkg.python.run.memo",
}


def test_warm_run_loads_only_the_standard_library_and_the_memo(
    tmp_path: Path, index: LocalIndex
) -> None:
    """DESIGN.md invariant 6, checked on a real warm run: exec'd from the memo."""
    root = project(tmp_path, "alpha")
    probe = ("python", "-c", "import alpha; print('probe ran', alpha.__name__)")
    first = run(index, root, *probe)  # cold: lock, sync, view, memo
    assert first.returncode == 0 and first.stdout.strip() == "probe ran alpha", first.stderr
    memos = list((Path(os.environ["CPK_CACHE_DIR"]) / "run-memo").iterdir())
    assert len(memos) == 1, memos
    written = memos[0].stat()
    # What this interpreter loads by itself (site, .pth files): not cpk's doing.
    startup = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    warm = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "contentpkg", "run", "--index-url", index.url,
         *probe],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.strip() == "probe ran alpha", warm.stderr
    # A memo hit: the memo was read, not written again, and nothing but it decided.
    again = memos[0].stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    loaded = _imported(warm.stderr) - _imported(startup.stderr)
    assert "contentpkg.python.run.memo" in loaded, sorted(loaded)
    outside = {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside <= HOT_PATH_MODULES, sorted(outside - HOT_PATH_MODULES)
    # Nor any standard module the decision could do without (collections,
    # zlib...), started as the console script starts it (``-m`` would load
    # runpy, which loads those itself), without site (whose .pth files here
    # may load them too), so that only cpk's own imports show.
    console, extra = _console_imports(root, "run", "--index-url", index.url, *probe)
    assert console.stdout.strip() == "probe ran alpha", console.stderr
    assert not extra, " ".join(sorted(extra))


def test_the_hot_path_check_sees_a_memo_miss(tmp_path: Path, index: LocalIndex) -> None:
    """The check above can fail: without a memo, the same run loads the full path."""
    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)
    for memo in (Path(os.environ["CPK_CACHE_DIR"]) / "run-memo").iterdir():
        memo.unlink()
    cold = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "contentpkg", "run", "--index-url", index.url,
         "python", "-c", "pass"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cold.returncode == 0, cold.stderr
    outside = {m for m in _imported(cold.stderr) if m.split(".")[0] not in sys.stdlib_module_names}
    assert {"contentpkg.cli.parser", "contentpkg.python.run.plan"} <= outside - HOT_PATH_MODULES
    # A miss with a fresh lock and a built environment only checks and execs:
    # cpk's own modules, but no third-party library (no packaging, resolvelib,
    # urllib3, rich), whose imports would cost more than the check itself.
    third_party = {m.split(".")[0] for m in outside} - {"contentpkg"}
    # A project with no [build-system] is never built and has no checkouts
    # to overlay: neither module is loaded for it.
    unneeded = {"contentpkg.python.build.project", "contentpkg.python.envs.overlay"}
    assert not outside & unneeded, sorted(outside & unneeded)
    startup = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert third_party <= {m.split(".")[0] for m in _imported(startup.stderr)}, sorted(third_party)


def _tree(root: Path) -> list[tuple]:
    """Everything a directory holds, as a comparison sees it: each path with
    its type, mode and target or bytes, and for a non-directory its inode
    (two views whose files are the same pool inodes compare equal)."""
    out = []
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out.append((rel, "link", st.st_mode, os.readlink(path), st.st_ino))
            elif os.path.isdir(path):
                out.append((rel, "dir", st.st_mode))
            else:
                out.append((rel, "file", st.st_mode, Path(path).read_bytes(), st.st_ino))
    return sorted(out)


#: What remaking a deleted view from the memo loads besides the hot path's
#: modules: the rebuild, the plan's replay, and two standard C modules.
REBUILD_MODULES = {
    "contentpkg.python.envs",
    "contentpkg.python.envs.rebuild",
    "contentpkg.python.envs.replay",
    "errno",
    "fcntl",
}


def test_a_deleted_view_is_made_again_from_the_memo(tmp_path: Path, index: LocalIndex) -> None:
    """Views are derived: with views/ gone and every input unchanged, the memo's
    recipe makes the same view again from the view's plan (links from the
    pool, nothing written), without the parser, the project, the lock, or
    any module of the builder or the store."""
    from contentpkg.fs import remove_tree
    from contentpkg.python.envs.replay import LINKS, PLAN_PREFIX

    root = project(tmp_path, "alpha")
    probe = ("python", "-c", "import alpha; print('probe ran', alpha.__name__)")
    run(index, root, *probe, check=True)
    view = os.readlink(root / ".venv")
    before = _tree(Path(view))
    (memo,) = (Path(os.environ["CPK_CACHE_DIR"]) / "run-memo").iterdir()
    written = memo.stat()
    plan = Path(os.environ["CPK_HOME"]) / LINKS / f"{PLAN_PREFIX}{os.path.basename(view)}"
    planned = plan.stat()
    # The recipe keeps what a view needs of the interpreter, not its wheel tags.
    import marshal

    facts = marshal.loads(memo.read_bytes())["rebuild"]["python"]
    assert facts["tags"] == [] and facts["version"] and facts["site_packages"]
    remove_tree(Path(view).parent)
    (root / ".venv").unlink()
    again, extra = _console_imports(root, "run", "--index-url", index.url, *probe)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "probe ran alpha"
    assert "Composed environment in" in again.stderr
    assert os.readlink(root / ".venv") == view
    # The same view: every path, mode, target and byte, and every file the
    # very inode it was (a link from the pool, no file written).
    assert _tree(Path(view)) == before
    # Made from its plan, which stays as the builder wrote it.
    assert (plan.stat().st_ino, plan.stat().st_mtime_ns) == (planned.st_ino, planned.st_mtime_ns)
    assert extra == REBUILD_MODULES, sorted(extra)
    # The memo still holds: nothing it watches changed, so it is not rewritten.
    after = memo.stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_deleted_view_without_its_plan_is_built_again_from_the_memo(
    tmp_path: Path, index: LocalIndex
) -> None:
    """The plan is derived data too: without it (or with a pool name it links
    collected), the memo's rebuild takes the builder, which makes the same
    view and writes the plan again; a replay that stops leaves nothing staged."""
    from contentpkg.fs import remove_tree
    from contentpkg.python.envs.replay import LINKS, PLAN_PREFIX

    root = project(tmp_path, "alpha")
    probe = ("python", "-c", "import alpha; print('probe ran', alpha.__name__)")
    run(index, root, *probe, check=True)
    view = Path(os.readlink(root / ".venv"))
    pool = Path(os.environ["CPK_HOME"]) / LINKS
    plan = pool / f"{PLAN_PREFIX}{view.name}"
    # A file only this view links (its script, whose #! names the view).
    script = view / "bin" / "alpha-tool"
    (pooled,) = (p for p in pool.iterdir() if p.stat().st_ino == script.stat().st_ino)
    contents = {p.relative_to(view): p.read_bytes() for p in view.rglob("*") if p.is_file()}
    for damaged in (plan, pooled):
        planned = plan.stat()
        damaged.unlink()
        remove_tree(view)
        (root / ".venv").unlink()
        again = run(index, root, *probe)
        assert again.returncode == 0 and again.stdout.strip() == "probe ran alpha", again.stderr
        assert "Composed environment in" in again.stderr
        made = {p.relative_to(view): p.read_bytes() for p in view.rglob("*") if p.is_file()}
        assert made == contents
        # Written anew by the builder (a new file: not the one it had).
        assert (plan.stat().st_ino, plan.stat().st_mtime_ns) != (
            planned.st_ino, planned.st_mtime_ns)  # fmt: skip
        assert not [n for n in os.listdir(view.parent) if n.startswith(".tmp-")]


def test_a_view_rebuilt_from_the_memo_says_its_conflicts_again(tmp_path: Path) -> None:
    """Nothing silent: two distributions installing one file are named when the
    view is made again, as when it was first made; ``-q`` drops only the summary."""
    from contentpkg.fs import remove_tree

    dists = tmp_path / "dists"
    make_wheel(dists, "one", "1.0", files={"shared.py": "WHO = 'one'\n"})
    make_wheel(dists, "two", "1.0", files={"shared.py": "WHO = 'two'\n"})
    root = project(tmp_path, "one", "two")
    probe = ("python", "-c", "import shared; print(shared.WHO)")
    with LocalIndex(dists) as index:
        first = run(index, root, *probe)
        assert first.returncode == 0 and first.stdout.strip() == "one", first.stderr
        assert "shared.py is installed by both" in first.stderr
        (memo,) = (Path(os.environ["CPK_CACHE_DIR"]) / "run-memo").iterdir()
        written = (memo.stat().st_ino, memo.stat().st_mtime_ns)
        for quiet in (False, True):
            remove_tree(Path(os.readlink(root / ".venv")).parent)
            (root / ".venv").unlink()
            again = run_cpk(*(["-q"] if quiet else []), "run", "--index-url", index.url, *probe,
                            cwd=root)  # fmt: skip
            assert again.returncode == 0 and again.stdout.strip() == "one", again.stderr
            assert "shared.py is installed by both" in again.stderr
            assert ("Composed environment" in again.stderr) is not quiet
            # Made from the memo's recipe: the full path would have rewritten it.
            assert (memo.stat().st_ino, memo.stat().st_mtime_ns) == written


def test_a_deleted_view_whose_entry_is_gone_takes_the_full_path(
    tmp_path: Path, index: LocalIndex
) -> None:
    """The recipe names store entries; one collected since sends the run back
    to the full path, which fetches it again."""
    from contentpkg.fs import remove_tree

    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)
    view = Path(os.readlink(root / ".venv"))
    entries = (view / ".cpk" / "refs").read_text().split()
    remove_tree(view.parent)
    (root / ".venv").unlink()
    store = Path(os.environ["CPK_HOME"]) / "store"
    remove_tree(store / entries[0])
    proc = run(index, root, "python", "-c", "import alpha; print('ok')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert (store / entries[0]).is_dir()
    assert os.readlink(root / ".venv") == str(view)


def _count_calls(*functions: object) -> tuple[Counter[str], object]:
    """A profile hook counting calls of functions (by code object), and the counts."""
    codes = {f.__code__: f.__name__ for f in functions}  # type: ignore[attr-defined]
    counts: Counter[str] = Counter()

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            counts[codes[frame.f_code]] += 1

    return counts, hook


def test_a_memo_miss_reads_the_lock_and_fingerprints_once(
    tmp_path: Path, index: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentpkg.context import Context
    from contentpkg.python.lock import read_lock
    from contentpkg.python.project import inputs_fingerprint
    from contentpkg.python.run.options import Options, RunRequest
    from contentpkg.python.run.plan import plan_run, prepare

    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)  # lock, store and view exist
    project(tmp_path, "alpha", "gamma")  # the lock is now stale: a relock is due
    monkeypatch.chdir(root)
    options = Options(ctx=Context.from_environ(), index_url=index.url)
    request = RunRequest(("python", "-c", "pass"))
    for expected_reads in (2, 1):  # relock: the old lock and the new; then fresh: one
        counts, hook = _count_calls(read_lock, inputs_fingerprint)
        sys.setprofile(hook)  # type: ignore[arg-type]
        try:
            prepared = prepare(plan_run(options, request))
        finally:
            sys.setprofile(None)
        assert counts == {"read_lock": expected_reads, "inputs_fingerprint": 1}
        check = subprocess.run([prepared.env / "bin" / "python", "-c", "import gamma"])
        assert check.returncode == 0


def test_lock_decisions_raise_their_own_types(tmp_path: Path) -> None:
    from contentpkg.errors import LockOutdatedError, LockUnreadableError, NotFoundError
    from contentpkg.python.run.lockstate import lock_state

    path = tmp_path / "pylock.toml"
    with pytest.raises(NotFoundError, match="no lock file"):
        lock_state(path, "f" * 64, cache_dir=tmp_path, frozen=True)
    with pytest.raises(LockOutdatedError, match="out of date"):
        lock_state(path, "f" * 64, cache_dir=tmp_path, locked=True)
    path.write_text("<<<<<<< HEAD\nlock-version = '1.0'\n")
    state = lock_state(path, "f" * 64, cache_dir=tmp_path)  # relocked from scratch
    assert state.found is None and state.usable is None and not state.fresh
    with pytest.raises(LockUnreadableError):
        lock_state(path, "f" * 64, cache_dir=tmp_path, frozen=True)


def test_the_memo_agrees_with_the_context() -> None:
    """The memo keeps its own copies (importing the context costs more than
    the whole hot path); they must say what the context says."""
    from contentpkg import context
    from contentpkg.python.run import memo

    assert memo.SETTINGS_VARIABLES == context.SETTINGS_VARIABLES
    assert context.Bucket.RUN_MEMO.value == memo.MEMO_DIR
    for environ in (
        {"HOME": "/h"},
        {"HOME": "/h", "XDG_CACHE_HOME": "/xdg"},
        {"HOME": "/h", "XDG_CACHE_HOME": "relative"},  # ignored, as the spec says
        {"HOME": "/h", "XDG_CACHE_HOME": "/xdg", "CPK_CACHE_DIR": "/cpk"},
        {"HOME": "/h", "CPK_CACHE_DIR": "rel/cache"},
    ):
        expected = context.Context.from_environ(environ).cache_dir
        assert Path(memo.cache_dir_of(environ)) == expected, environ


def _imports_of(path: Path, package: str) -> set[str]:
    """Every module path imports, at any depth (lazy imports too), made absolute."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


SRC = Path(__file__).resolve().parents[2] / "src" / "contentpkg"


def test_run_modules_import_each_other_without_a_cycle() -> None:
    run_dir = SRC / "python" / "run"
    modules = {f"contentpkg.python.run.{p.stem}": p for p in run_dir.glob("*.py")}
    graph = {
        name: {m for m in _imports_of(path, "contentpkg.python.run") if m in modules} - {name}
        for name, path in modules.items()
    }
    assert graph.get("contentpkg.python.run.plan")
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " -> ".join([*visiting, name])
        if name in done:
            return
        visiting.append(name)
        for dep in graph[name]:
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_the_memo_path_imports_only_the_standard_library() -> None:
    memo = _imports_of(SRC / "python" / "run" / "memo.py", "contentpkg.python.run")
    fs = _imports_of(SRC / "fs.py", "contentpkg")
    ours = {m for m in memo if m.split(".")[0] not in sys.stdlib_module_names}
    # errors and fs are standard library only (fs: checked next), and lazy.
    # The rebuild of a deleted view is imported only on that miss (a hit
    # loads nothing of it: test_warm_run_loads_only_the_standard_library...).
    assert ours <= {"contentpkg.errors", "contentpkg.errors.ExecError", "contentpkg.fs",
                    "contentpkg.fs.write_cache", "contentpkg.python.envs.rebuild",
                    "contentpkg.python.envs.rebuild.rebuild_view"}, ours  # fmt: skip
    assert {m for m in fs if m.split(".")[0] not in sys.stdlib_module_names} == set()
    errors = _imports_of(SRC / "errors.py", "contentpkg")
    assert {m for m in errors if m.split(".")[0] not in sys.stdlib_module_names} == set()


def test_own_dot_venv_is_left_alone(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    (root / ".venv").mkdir()
    (root / ".venv" / "mine").write_text("user's own")
    proc = run(index, root, "python", "-c", "import alpha")
    assert proc.returncode == 0
    assert "your own environment" in proc.stderr
    assert (root / ".venv" / "mine").read_text() == "user's own"


def test_with_adds_a_requirement_for_one_run(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)
    lock = (root / "pylock.toml").read_bytes()
    proc = run_cpk(
        "run",
        "--index-url",
        index.url,
        "--with",
        "gamma",
        "python",
        "-c",
        "import gamma, alpha; print('both')",
        cwd=root,
    )
    assert proc.stdout.strip() == "both", proc.stderr
    assert (root / "pylock.toml").read_bytes() == lock
    again = run(index, root, "python", "-c", "import gamma")
    assert again.returncode == 1


def test_pep723_script_runs_in_its_own_environment(tmp_path: Path, index: LocalIndex) -> None:
    script = tmp_path / "tool.py"
    script.write_text(
        textwrap.dedent(
            """\
        # /// script
        # dependencies = ["gamma"]
        # ///
        import gamma, importlib.util
        print("gamma", gamma.__version__, importlib.util.find_spec("alpha") is None)
        """
        )
    )
    proc = run_cpk("run", "--index-url", index.url, script, cwd=tmp_path)
    assert proc.stdout.strip() == "gamma 1.0 True", proc.stderr
    assert not (tmp_path / "pylock.toml").exists()


def test_gc_keeps_environments_a_root_reaches(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)
    run_cpk(
        "run",
        "--index-url",
        index.url,
        "--with",
        "gamma",
        "python",
        "-c",
        "pass",
        cwd=root,
        check=True,
    )
    home = Path(os.environ["CPK_HOME"])
    views = sorted(os.listdir(home / "views"))
    assert len(views) == 2  # the project's, and the throwaway --with one
    gc = run_cpk("store", "gc", check=True)
    assert len(os.listdir(home / "views")) == 1, gc.stdout  # --with's view went
    assert "gamma" in gc.stdout and "alpha" not in gc.stdout
    assert run(index, root, "python", "-c", "import alpha").returncode == 0
    # Without the project's .venv and lock, everything goes.
    (root / ".venv").unlink()
    (root / "pylock.toml").unlink()
    run_cpk("store", "gc", check=True)
    assert os.listdir(home / "views") == []
    assert not (home / "envs").exists() or os.listdir(home / "envs") == []
    assert [n for n in os.listdir(home / "store") if not n.startswith(".")] == []


def test_warm_runs_notice_every_change_that_matters(tmp_path: Path, index: LocalIndex) -> None:
    """The hot path execs from a memo: each input it depends on must void it."""
    root = project(tmp_path, "alpha")
    sub = root / "deeper" / "still"
    sub.mkdir(parents=True)
    assert run(index, sub, "python", "-c", "import alpha").returncode == 0
    assert run(index, sub, "python", "-c", "import alpha").returncode == 0  # from the memo
    # A new dependency in pyproject.toml is seen at once.
    project(tmp_path, "alpha", "gamma")
    assert run(index, sub, "python", "-c", "import gamma").returncode == 0
    # A project appearing between here and the root takes over.
    (root / "deeper" / "pyproject.toml").write_text(
        '[project]\nname = "inner"\nversion = "0"\ndependencies = ["beta"]\n'
    )
    inner = run(index, sub, "python", "-c", "import beta, importlib.util as u; "
                "print(u.find_spec('alpha') is None)")  # fmt: skip
    assert inner.stdout.strip() == "True", inner.stderr
    (root / "deeper" / "pyproject.toml").unlink()
    # An environment removed behind cpk's back is rebuilt, not exec'd into.
    home = Path(os.environ["CPK_HOME"])
    run_cpk("store", "gc", check=True)  # nothing to remove: all rooted
    for view in (home / "views").iterdir():
        subprocess.run(["chmod", "-R", "u+w", view], check=True)
        subprocess.run(["rm", "-rf", view], check=True)
    assert run(index, sub, "python", "-c", "import alpha, gamma").returncode == 0


def test_launchers_are_the_scripts_installer_writes() -> None:
    """Views write entry-point scripts by hand (installer's package import is
    slow); they must stay byte-identical to what installer would write."""
    from installer.scripts import Script

    from contentpkg.python.envs.views import launcher

    for python in ("/env/bin/python", "/with space/bin/python", "/" + "x" * 140 + "/python"):
        for module, attr in (("pkg", "main"), ("pkg.cli", "app.run")):
            expected = Script("tool", module, attr, "console").generate(python, "posix")[1]
            assert launcher(Path(python), module, attr) == expected


def test_a_bad_with_requirement_is_one_line(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    proc = run_cpk("-q", "run", "--index-url", index.url, "--with", "bad req!!", "python", cwd=root)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "invalid requirement 'bad req!!'" in proc.stderr


@pytest.mark.parametrize("header", ["pep723", "plain"])
def test_both_command_forms_of_a_script_share_a_directory(
    tmp_path: Path, index: LocalIndex, header: str
) -> None:
    """``cpk run x.py`` execs ``python x.py`` and ``cpk run python x.py`` execs
    the command as given: the memo of one form must never serve the other."""
    root = project(tmp_path, "alpha")
    lines = ['# /// script\n# dependencies = ["gamma"]\n# ///\n'] if header == "pep723" else []
    (root / "x.py").write_text("".join(lines) + "import sys\nprint('ran', sys.argv[1:])\n")
    forms = [("x.py", "a"), ("python", "x.py", "a"), ("x.py", "a"), ("python3", "x.py", "a")]
    # Each form twice: the second of each is the memo's (the hot path).
    for command in [*forms, *forms]:
        proc = run(index, root, *command)
        assert proc.returncode == 0, (command, proc.stderr)
        assert proc.stdout.strip() == "ran ['a']", (command, proc.stdout)


# --- what a warm run must notice -------------------------------------------------

PROBE = (
    "import importlib.util as u; print([n for n in ('alpha', 'beta', 'gamma') if u.find_spec(n)])"
)


def test_a_header_added_to_a_script_is_noticed(tmp_path: Path, index: LocalIndex) -> None:
    """The script is an input of the memo even without a header: adding one
    chooses another environment."""
    root = project(tmp_path, "alpha")
    (root / "x.py").write_text(PROBE + "\n")
    for _ in range(2):
        assert run(index, root, "x.py").stdout.strip() == "['alpha', 'beta']"
    (root / "x.py").write_text('# /// script\n# dependencies = ["gamma"]\n# ///\n' + PROBE + "\n")
    proc = run(index, root, "x.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['gamma']"


def test_a_project_appearing_under_a_with_run_is_noticed(tmp_path: Path, index: LocalIndex) -> None:
    where = tmp_path / "bare"
    where.mkdir()
    for _ in range(2):
        proc = run(index, where, "--with", "gamma", "python", "-c", PROBE)
        assert proc.stdout.strip() == "['gamma']", proc.stderr
    (where / "pyproject.toml").write_text(
        '[project]\nname = "late"\nversion = "0"\ndependencies = ["alpha"]\n'
    )
    proc = run(index, where, "--with", "gamma", "python", "-c", PROBE)
    assert proc.stdout.strip() == "['alpha', 'beta', 'gamma']", proc.stderr


def test_an_edited_with_checkout_is_noticed(tmp_path: Path, index: LocalIndex) -> None:
    lib = tmp_path / "lib"
    (lib / "libp").mkdir(parents=True)
    (lib / "libp" / "__init__.py").write_text("")
    (lib / "pyproject.toml").write_text(
        '[project]\nname = "libp"\nversion = "0"\ndependencies = ["alpha"]\n'
    )
    where = tmp_path / "bare"
    where.mkdir()
    req = f"libp @ {lib.as_uri()}"
    for _ in range(2):
        proc = run(index, where, "--with", req, "python", "-c", PROBE)
        assert proc.stdout.strip() == "['alpha', 'beta']", proc.stderr
    (lib / "pyproject.toml").write_text(
        '[project]\nname = "libp"\nversion = "0"\ndependencies = ["gamma"]\n'
    )
    proc = run(index, where, "--with", req, "python", "-c", PROBE)
    assert proc.stdout.strip() == "['gamma']", proc.stderr


def test_a_different_path_decides_afresh(tmp_path: Path, index: LocalIndex) -> None:
    """PATH chooses what ``--python NAME`` finds, so a memo is valid for one
    PATH only: the same name found in another directory is another interpreter."""
    other = Path("/usr/bin/python3")
    if not other.exists() or os.path.realpath(other) == os.path.realpath(sys.executable):
        pytest.skip("needs a second interpreter at /usr/bin/python3")
    root = project(tmp_path, "alpha")
    for name, target in (("first", sys.executable), ("second", other)):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "pyx").symlink_to(target)
    base = os.environ["PATH"]
    show = ("--python", "pyx", "python", "-c", "import sys; print(sys._base_executable)")
    seen = []
    for name in ("first", "first", "second"):
        proc = run(index, root, *show, env={"PATH": f"{tmp_path / name}:{base}"})
        assert proc.returncode == 0, proc.stderr
        seen.append(os.path.realpath(proc.stdout.strip()))
    assert seen[0] == seen[1] == os.path.realpath(sys.executable)
    assert seen[2] == os.path.realpath(other)
