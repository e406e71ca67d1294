"""cpk run: the project's environment, composed from the store, exec'd into."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
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
    body = (
        '[project.scripts]\nproj-cli = "proj:cli"\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    root = project(tmp_path, "alpha", body=body)
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


def test_hot_path_imports_nothing_heavy(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "alpha")
    run(index, root, "python", "-c", "pass", check=True)  # warm: lock, sync, view
    code = textwrap.dedent(
        """
        import os, sys
        from contentpkg import cli
        os.execvpe = lambda *a: (print(" ".join(sorted(sys.modules))), sys.exit(0))
        cli.main(["run", "python", "-c", "pass"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    heavy = {
        "resolvelib",
        "urllib3",
        "rich",
        "tomli_w",
        "packaging",
        "installer",
        "contentpkg.python.resolve.resolver",
        "contentpkg.python.run.operations",
        "contentpkg.python.index.http",
        "sqlite3",
        "ssl",
    }
    assert not heavy & loaded, heavy & loaded


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
    proc = run_cpk("run", "--index-url", index.url, "--with", "bad req!!", "python", cwd=root)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "invalid requirement 'bad req!!'" in proc.stderr
