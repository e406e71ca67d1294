"""contentpkg.use(): a running interpreter adds packages to itself, and only itself.

Every test runs real interpreters (``python -c`` or a script) with the
fixture's CPK_HOME and CPK_CACHE_DIR, against wheels built on the fly and
served by a loopback index, so each starts from a process that has never
seen the test packages.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

from contentpkg.store import Store


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(
        root,
        "rt-pkg",
        "1.0",
        requires_dist=["rt-dep>=1", "rt-extra; extra == 'more'"],
        provides_extra=["more"],
        files={
            "rt_pkg/__init__.py": "import rt_dep\n__version__ = '1.0'\n",
            "rt_pkg_hook.pth": "import os; os.environ['RT_PTH'] = 'ran'\n",
        },
    )
    make_wheel(root, "rt-dep", "1.0")
    make_wheel(root, "rt-dep", "2.0")
    make_wheel(root, "rt-extra", "1.0")
    make_wheel(root, "rt-conf", "1.0")
    make_wheel(root, "rt-conf", "2.0")
    make_wheel(root, "rt-needs-conf2", "1.0", requires_dist=["rt-conf>=2"])
    # Depends on projects the index does not serve at all: they are taken
    # from this interpreter, where the test runner has them installed.
    make_wheel(root, "rt-uses-base", "1.0", requires_dist=["pytest", "packaging>=20"])
    make_wheel(root, "rt-wants-old-pytest", "1.0", requires_dist=["pytest<1"])
    with LocalIndex(root) as served:
        yield served


def python(
    code: str,
    index: LocalIndex | None,
    *,
    env: dict[str, str] | None = None,
    script: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter with the test's CPK_HOME/CPK_CACHE_DIR (and index)."""
    full = dict(os.environ)
    full.pop("CPK_FIND_LINKS", None)
    if index is not None:
        full["CPK_INDEX_URL"] = index.url
    full.update(env or {})
    if script is not None:
        script.write_text(textwrap.dedent(code))
        args = [sys.executable, str(script)]
    else:
        args = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(args, env=full, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def site_listing() -> dict[str, list[str]]:
    """What the interpreter's own site directories hold (to prove nothing changed)."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return {d: sorted(os.listdir(d)) if os.path.isdir(d) else [] for d in dirs}


def test_use_makes_packages_and_dependencies_importable(index: LocalIndex) -> None:
    before = site_listing()
    lines = ok(
        python(
            """
            import importlib.util, json, os, sys
            import contentpkg
            print(importlib.util.find_spec("rt_pkg") is None, importlib.util.find_spec("rt_dep"))
            added = contentpkg.use("rt-pkg>=1")
            print(json.dumps([[m.name, m.version, m.how] for m in added]))
            import rt_pkg, rt_dep
            import importlib.metadata as md
            print(rt_pkg.__version__, md.version("rt-dep"), os.environ.get("RT_PTH"))
            print(json.dumps([str(m.entry.path) for m in added]))
            """,
            index,
        )
    )
    assert lines[0] == "True None"
    # The newest rt-dep satisfying rt-pkg's requirement, fetched into the store.
    assert json.loads(lines[1]) == [["rt-dep", "2.0", "fetched"], ["rt-pkg", "1.0", "fetched"]]
    # Imports, importlib.metadata and the wheel's .pth file, as after an install.
    assert lines[2] == "1.0 2.0 ran"
    store = Store.open()
    for path in json.loads(lines[3]):
        entry = store.containing(Path(path))
        assert entry is not None and entry[0].path == Path(path)
        # Bytecode compiled into the entry for this interpreter (invariant 4).
        marker = Path(path) / ".cpk" / f"bytecode-{sys.implementation.cache_tag}"
        assert marker.is_file()
    # Nothing was installed into the interpreter itself.
    assert site_listing() == before


def test_second_use_is_a_no_op_and_farms_are_shared(
    tmp_path: Path, index: LocalIndex, cpk_home: Path
) -> None:
    nowhere = (tmp_path / "no-index").as_uri()
    code = f"""
        import json, sys
        import contentpkg
        first = contentpkg.use("rt-pkg")
        path_after_first = list(sys.path)
        import rt_pkg
        # Satisfied: answered from installed metadata, so an index that does
        # not exist is never asked (asking it would fail).
        again = contentpkg.use("rt-pkg>=1", "rt-dep", index_url={nowhere!r})
        print(json.dumps([[m.name, m.how] for m in first]))
        print(again == [] and sys.path == path_after_first)
        print(rt_pkg.__file__)
        """
    first = ok(python(code, index))
    assert first[1] == "True"
    index.clear_log()
    # Another process asking again resolves, finds the entries in the store
    # and reuses the same farm.
    second = ok(python(code, index))
    assert second[0] == '[["rt-dep", "present"], ["rt-pkg", "present"]]'
    assert second[1] == "True"
    assert second[2] == first[2]
    assert not any(p.startswith("/files/") for p in index.paths()), "nothing downloaded again"
    farms = [p for p in (cpk_home / "runtime").iterdir() if not p.name.startswith(".")]
    assert len(farms) == 1
    assert Path(first[2]).is_relative_to(farms[0])


def test_satisfied_use_loads_no_machinery(tmp_path: Path, cpk_home: Path) -> None:
    # What this interpreter already has needs no resolver, index or store.
    lines = ok(
        python(
            f"""
            import sys, contentpkg
            print(contentpkg.use("pytest", "packaging>=20", index_url={str(tmp_path)!r}))
            heavy = ("resolvelib", "contentpkg.python.run.sync",
                     "contentpkg.python.index.client", "contentpkg.store", "rich")
            print(sorted(m for m in sys.modules if m.startswith(heavy)))
            """,
            None,
        )
    )
    assert lines == ["[]", "[]"]
    assert list(cpk_home.iterdir()) == []  # not even the store was opened


def test_other_processes_do_not_see_the_packages(index: LocalIndex) -> None:
    ok(python("import contentpkg; contentpkg.use('rt-pkg')", index))
    # Not even a child started with sys.executable: the packages are this
    # process's, not the interpreter's.
    lines = ok(
        python(
            """
            import subprocess, sys, contentpkg
            contentpkg.use("rt-pkg")
            import rt_pkg
            child = subprocess.run([sys.executable, "-c", "import rt_pkg"], capture_output=True)
            print(child.returncode != 0)
            """,
            index,
        )
    )
    assert lines == ["True"]
    other = python("import rt_pkg", index)
    assert other.returncode != 0 and "ModuleNotFoundError" in other.stderr


def test_conflict_with_an_imported_version(index: LocalIndex) -> None:
    lines = ok(
        python(
            """
            import sys, contentpkg
            contentpkg.use("rt-conf==1.0")
            import rt_conf
            path = list(sys.path)
            for req in ("rt-conf>=2", "rt-needs-conf2"):
                try:
                    contentpkg.use(req)
                except contentpkg.CpkError as exc:
                    print(exc)
                else:
                    print("no error")
            print(sys.path == path)
            import importlib.metadata as md, importlib.util
            print(md.version("rt-conf"), importlib.util.find_spec("rt_needs_conf2") is None)
            """,
            index,
        )
    )
    assert lines[0] == "rt-conf>=2 conflicts with rt-conf 1.0, already imported in this process"
    # Through a dependency: the resolver's message, naming the pinned copy.
    assert "rt-conf>=2" in lines[1]
    assert "rt-conf 1.0 is already imported in this process" in lines[1]
    # A failed use() changes nothing in the process.
    assert lines[2:] == ["True", "1.0 True"]


def test_conflict_with_the_interpreters_own_packages(index: LocalIndex) -> None:
    lines = ok(
        python(
            """
            import importlib.metadata as md, contentpkg
            print(md.version("pytest"))
            for req in ("pytest<1", "rt-wants-old-pytest"):
                try:
                    contentpkg.use(req)
                except contentpkg.CpkError as exc:
                    print(exc)
            """,
            index,
        )
    )
    version = lines[0]
    # Installed but never imported here: the message says where it comes from.
    assert lines[1].startswith(f"pytest<1 conflicts with pytest {version}, already importable ")
    assert "site-packages" in lines[1]
    assert f"pytest {version} is already importable in this process" in lines[2]


def test_installed_dependencies_are_used_as_they_are(index: LocalIndex) -> None:
    # rt-uses-base needs pytest and packaging, which the index does not
    # serve: the copies this interpreter has satisfy them, untouched.
    lines = ok(
        python(
            """
            import json, contentpkg, packaging
            added = contentpkg.use("rt-uses-base")
            print(json.dumps([m.name for m in added]))
            import rt_uses_base
            """,
            index,
        )
    )
    assert lines == ['["rt-uses-base"]']
    assert not any("pytest" in p or "packaging" in p for p in index.paths())


def test_an_extra_adds_its_dependencies_later(index: LocalIndex) -> None:
    lines = ok(
        python(
            """
            import json, contentpkg
            contentpkg.use("rt-pkg")
            print(json.dumps([m.name for m in contentpkg.use("rt-pkg[more]")]))
            print(contentpkg.use("rt-pkg[more]"))
            import rt_extra
            """,
            index,
        )
    )
    assert lines == ['["rt-extra"]', "[]"]


def test_index_arguments_and_bad_input(tmp_path: Path, index: LocalIndex) -> None:
    # No CPK_INDEX_URL: the argument names the index, as --index-url does.
    lines = ok(
        python(
            f"""
            import contentpkg
            print([m.name for m in contentpkg.use("rt-dep==1.0", index_url={index.url!r})])
            for bad in ("not a requirement!", "rt-absent"):
                try:
                    contentpkg.use(bad, index_url={index.url!r})
                except contentpkg.CpkError as exc:
                    print(exc)
            try:
                contentpkg.use()
            except contentpkg.CpkError as exc:
                print(exc)
            """,
            None,
        )
    )
    assert lines[0] == "['rt-dep']"
    assert lines[1].startswith("use: invalid requirement 'not a requirement!'")
    assert lines[2].startswith("no project named rt-absent on ")
    assert lines[3] == "use: name at least one requirement"


def test_index_settings_from_the_environment(tmp_path: Path, index: LocalIndex) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    # The same variables as the CLI: an index with nothing, find-links with
    # the files; then arguments, which win over the variables.
    lines = ok(
        python(
            f"""
            import contentpkg
            print([m.name for m in contentpkg.use("rt-conf==2.0")])
            print([m.name for m in contentpkg.use("rt-dep==1.0", extra_index_urls=[{index.url!r}])])
            print([m.name for m in contentpkg.use("rt-extra", find_links=[{index.links_url!r}])])
            """,
            None,
            env={"CPK_INDEX_URL": empty.as_uri(), "CPK_FIND_LINKS": str(index.root)},
        )
    )
    assert lines == ["['rt-conf']", "['rt-dep']", "['rt-extra']"]


def test_use_at_the_top_of_a_script(tmp_path: Path, index: LocalIndex) -> None:
    # No __main__ guard, several entries to compile: compiling must not
    # start worker processes that would run this script again.
    lines = ok(
        python(
            """
            import contentpkg
            contentpkg.use("rt-pkg", "rt-conf")
            import rt_pkg, rt_conf
            print("ran once")
            """,
            index,
            script=tmp_path / "script.py",
        )
    )
    assert lines == ["ran once"]


def test_gc_keeps_the_entries_while_the_farm_exists(index: LocalIndex, cpk_home: Path) -> None:
    ok(python("import contentpkg; contentpkg.use('rt-pkg')", index))
    run_cpk("store", "gc", check=True)
    names = sorted(e.name for e in Store.open().entries())
    assert names == ["rt-dep", "rt-pkg"]
    assert ok(python("import contentpkg; print(contentpkg.use('rt-pkg')); import rt_pkg", index))
    # The farm is a cache: once removed, its root dangles and gc frees the entries.
    import shutil

    shutil.rmtree(cpk_home / "runtime")
    run_cpk("store", "gc", check=True)
    assert Store.open().entries() == []


def test_import_contentpkg_stays_cheap() -> None:
    lines = ok(
        python(
            """
            import sys
            before = set(sys.modules)
            import contentpkg
            print(sorted(set(sys.modules) - before))
            use = contentpkg.use
            print(use.__module__, "packaging" in sys.modules, "resolvelib" in sys.modules)
            """,
            None,
        )
    )
    # Nothing but the package itself: not the runtime, the resolver, packaging.
    assert lines[0] == "['contentpkg']"
    # Asking for use() loads its module, still without the heavy machinery.
    assert lines[1] == "contentpkg.python.use False False"


def test_gc_collects_runtime_farms_unused_for_a_month(tmp_path: Path) -> None:
    """Farms have no owner to delete them: gc ages them out by last use."""
    import time

    from contentpkg.namespaces import registry
    from contentpkg.python.envs.roots import RUNTIME_MAX_AGE
    from contentpkg.store import Store
    from contentpkg.store.gc import add_root, collect

    store = Store.open()
    store.ensure()
    farm = store.home / "runtime" / "somekey"
    (farm / ".cpk").mkdir(parents=True)
    (farm / ".cpk" / "refs").write_text("")
    link = add_root(store, "runtime-somekey", farm)
    collect(store, registry())
    assert farm.is_dir() and link.is_symlink()  # recently used: kept
    old = time.time() - RUNTIME_MAX_AGE - 60
    os.utime(farm, (old, old))
    report = collect(store, registry())
    assert "runtime-somekey" in report.pruned_roots
    assert not farm.exists() and not link.is_symlink()
