"""PEP 517 sdist builds in build environments composed from store entries.

Everything here is real: sdists made on the fly, backends run in
subprocesses by the interpreter running the tests, entries added to a store
under the test's own CPK_HOME. No network, no mocks.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from support.wheels import make_sdist, metadata_text, normalize

from contentpkg.context import Bucket, Context
from contentpkg.errors import CpkError
from contentpkg.python.build.buildenv import BuildEnv
from contentpkg.python.build.sdist import DEFAULT_REQUIRES, build_sdist_wheel, sdist_metadata
from contentpkg.python.interpreter import interpreter_info
from contentpkg.store.add import add_built, add_path
from contentpkg.store.entry import Entry
from contentpkg.store.layers import Store

# -- fixtures --------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    # cwd=tmp_path: no project store of an enclosing checkout joins in.
    return Store.open(cwd=tmp_path)


def wheel_entry(
    store: Store,
    name: str,
    version: str,
    files: Mapping[str, str],
    console_scripts: Mapping[str, str] | None = None,
) -> Entry:
    """A wheel entry in the layout python/install/wheel.py produces."""
    dist = normalize(name)

    def populate(root: Path) -> None:
        site = root / "site-packages"
        for rel, text in files.items():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_text(text)
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(metadata_text(name, version))
        for sub in ("scripts", "data", "headers"):
            (root / sub).mkdir()

    top_level = sorted({rel.split("/")[0].removesuffix(".py") for rel in files})
    extra = {
        "python": {
            "top_level": top_level,
            "entry_points": {"console_scripts": dict(console_scripts or {})},
        }
    }
    return add_built(store, name, version, "wheel", populate, extra=extra).entry


class Resolver:
    """A resolve_build_requires that serves fixed entries and records calls."""

    def __init__(self, *entries: Entry) -> None:
        self.entries = list(entries)
        self.calls: list[list[str]] = []

    def __call__(self, requires: list[str]) -> list[Entry]:
        self.calls.append(list(requires))
        return list(self.entries)


def refuse(requires: list[str]) -> list[Entry]:
    raise AssertionError(f"nothing should be resolved, asked for {requires}")


def custom_sdist(
    dest: Path,
    name: str,
    version: str,
    members: Mapping[str, str | bytes],
) -> Path:
    """A tar.gz sdist holding exactly members (below ``name-version/``)."""
    root = f"{normalize(name)}-{version}"
    members = {"PKG-INFO": metadata_text(name, version), **members}
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for arcname, content in members.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{root}/{arcname}")
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


INLINE_PYPROJECT = (
    '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
)


def build(sdist: Path, resolver: Callable[[list[str]], list[Entry]], **kw: object) -> Path:
    return build_sdist_wheel(sdist, python=sys.executable, resolve_build_requires=resolver, **kw)  # type: ignore[arg-type]


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# -- building --------------------------------------------------------------


def test_builds_a_wheel_from_an_sdist_without_build_requirements(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dist", "plain-pkg", "1.0")
    resolver = Resolver()
    wheel = build(sdist, resolver)
    assert wheel.name == "plain_pkg-1.0-py3-none-any.whl"
    assert wheel.is_relative_to(Context.from_environ().bucket(Bucket.BUILT_WHEELS))
    files = wheel_files(wheel)
    assert b"BUILT_FROM_SDIST = True" in files["plain_pkg/__init__.py"]
    assert b"Name: plain-pkg" in files["plain_pkg-1.0.dist-info/METADATA"]
    assert resolver.calls == []  # nothing was required, nothing was asked


def test_build_requirement_is_importable_only_from_its_entry(tmp_path: Path, store: Store) -> None:
    helper = wheel_entry(store, "helperpkg", "2.0", {"helperpkg/__init__.py": "OK = 1\n"})
    sdist = make_sdist(tmp_path / "dist", "needs-helper", "1.0", build_requires=["helperpkg>=2"])
    resolver = Resolver(helper)
    wheel = build(sdist, resolver)
    assert wheel.name == "needs_helper-1.0-py3-none-any.whl"
    # The static requires are empty; the backend asked for helperpkg.
    assert resolver.calls == [["helperpkg>=2"]]


def test_missing_build_requirement_is_named(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dist", "needs-helper", "1.0", build_requires=["helperpkg>=2"])
    with pytest.raises(CpkError) as err:
        build(sdist, Resolver())
    assert str(err.value) == (
        "cannot build needs-helper 1.0 from needs_helper-1.0.tar.gz: "
        "no store entry provides build requirement 'helperpkg>=2'"
    )


def test_build_requirement_version_is_checked(tmp_path: Path, store: Store) -> None:
    old = wheel_entry(store, "helperpkg", "1.0", {"helperpkg/__init__.py": ""})
    sdist = make_sdist(tmp_path / "dist", "needs-helper", "1.0", build_requires=["helperpkg>=2"])
    with pytest.raises(CpkError, match=r"'helperpkg>=2' is not satisfied by version 1\.0"):
        build(sdist, Resolver(old))


def test_requirements_whose_markers_exclude_this_interpreter_are_not_needed(
    tmp_path: Path,
) -> None:
    sdist = custom_sdist(
        tmp_path / "dist",
        "marked",
        "1.0",
        {
            "pyproject.toml": INLINE_PYPROJECT.replace(
                "requires = []", "requires = ['nowhere; python_version < \"3\"']"
            ),
            "backend.py": _backend(),
        },
    )
    resolver = Resolver()
    assert build(sdist, resolver).name == "marked-1.0-py3-none-any.whl"
    assert resolver.calls == [['nowhere; python_version < "3"']]


def test_real_setuptools_from_the_store_runs_a_legacy_build(tmp_path: Path, store: Store) -> None:
    """No pyproject.toml: the setuptools legacy backend, taken from an entry
    holding this interpreter's setuptools, runs in the build environment."""
    try:
        dist = importlib.metadata.distribution("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed here to copy into the store")
    base = Path(dist.locate_file(""))
    files = {
        str(f): (base / f).read_text(encoding="utf-8", errors="surrogateescape")
        for f in dist.files or []
        if not str(f).startswith("..") and "__pycache__" not in str(f) and f.suffix != ".pyc"
    }
    entry = _entry_from_texts(store, "setuptools", dist.version, files)
    sdist = custom_sdist(
        tmp_path / "dist",
        "legacy-proj",
        "0.3",
        {
            "setup.py": "from setuptools import setup\n"
            "setup(name='legacy-proj', version='0.3', py_modules=['legacy_mod'])\n",
            "legacy_mod.py": "VALUE = 3\n",
        },
    )
    resolver = Resolver(entry)
    try:
        wheel = build(sdist, resolver)
    except CpkError as exc:
        # setuptools before 70.1 asks for "wheel", which this store lacks:
        # the hook ran in the build env and its answer reached the resolver.
        assert "'wheel'" in str(exc), exc
        assert resolver.calls[1][0] == DEFAULT_REQUIRES[0]
        assert any(r.startswith("wheel") for r in resolver.calls[1])
    else:
        assert wheel.name.startswith("legacy_proj-0.3-")
        assert "legacy_mod.py" in wheel_files(wheel)
    assert resolver.calls[0] == list(DEFAULT_REQUIRES)


def test_project_without_build_system_asks_for_setuptools(tmp_path: Path) -> None:
    sdist = custom_sdist(tmp_path / "dist", "legacy", "1.0", {"setup.py": "raise SystemExit(1)\n"})
    resolver = Resolver()
    with pytest.raises(CpkError, match="no store entry provides build requirement 'setuptools"):
        build(sdist, resolver)
    assert resolver.calls == [["setuptools>=40.8.0"]]


# -- isolation -------------------------------------------------------------


def _run(env: BuildEnv, code: str) -> tuple[int, str]:
    with tempfile.TemporaryFile() as out:
        status = env.run([env.python, "-c", code], output=out)
        out.seek(0)
        return status, out.read().decode()


def _can_import(python: str, module: str, extra_env: Mapping[str, str] | None = None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra_env or {})
    proc = subprocess.run([python, "-c", f"import {module}"], env=env, capture_output=True)
    return proc.returncode == 0


def test_build_env_sees_its_entries_and_not_the_base_site_packages(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = wheel_entry(
        store,
        "helperpkg",
        "1.0",
        {"helperpkg/__init__.py": "def main():\n    print('helper-tool ran')\n"},
        console_scripts={"helper-tool": "helperpkg:main"},
    )
    # An entry that ships a .pth file, as setuptools and editable installs do.
    vendoring = wheel_entry(
        store,
        "vendoring",
        "1.0",
        {"vendoring.pth": "vendored\n", "vendored/vendmod.py": "WHERE = 'vendored'\n"},
    )
    # The user site and PYTHONPATH of the caller must not leak in either.
    user_base = tmp_path / "userbase"
    major, minor = sys.version_info[:2]
    user_site = user_base / "lib" / f"python{major}.{minor}" / "site-packages"
    user_site.mkdir(parents=True)
    (user_site / "usermod.py").write_text("")
    monkeypatch.setenv("PYTHONUSERBASE", str(user_base))
    on_path = tmp_path / "pythonpath"
    on_path.mkdir()
    (on_path / "pathmod.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(on_path))

    # What the interpreter running the tests (perhaps a venv) and the
    # installation the build env is made from can import from their
    # site-packages; pytest at least is there, since it runs this test.
    base = interpreter_info(sys.executable).base_executable
    base_modules = [
        m
        for m in ("pytest", "pluggy", "iniconfig", "contentpkg")
        if _can_import(sys.executable, m) or _can_import(base, m)
    ]
    assert "pytest" in base_modules
    assert _can_import(base, "usermod", {"PYTHONUSERBASE": str(user_base)})

    with BuildEnv([helper, vendoring], python=sys.executable, parent=tmp_path) as env:
        status, out = _run(env, "import sys, helperpkg, vendmod; print(sys.prefix)")
        assert status == 0, out
        assert out.strip() == str(env.path)
        for module in [*base_modules, "usermod", "pathmod"]:
            status, out = _run(env, f"import {module}")
            assert status != 0 and "ModuleNotFoundError" in out, (module, out)
        status, out = _run(env, "import subprocess; subprocess.run(['helper-tool'], check=True)")
        assert (status, out.strip()) == (0, "helper-tool ran")
        path = env.path
    assert not path.exists()


def test_only_wheel_entries_join_a_build_env(tmp_path: Path, store: Store) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("x")
    generic = add_path(store, tmp_path / "tree", "tree", "1").entry
    with pytest.raises(CpkError, match="a generic entry cannot join a Python build environment"):
        BuildEnv([generic], python=sys.executable)


# -- the built-wheel cache -------------------------------------------------


def test_second_build_of_the_same_sdist_comes_from_the_cache(tmp_path: Path, store: Store) -> None:
    counter = tmp_path / "imports"
    helper = wheel_entry(
        store,
        "helperpkg",
        "1.0",
        {"helperpkg/__init__.py": f"open({str(counter)!r}, 'a').write('imported\\n')\n"},
    )
    sdist = make_sdist(tmp_path / "dist", "cached", "1.0", build_requires=["helperpkg"])
    resolver = Resolver(helper)
    first = build(sdist, resolver)
    builds = counter.read_text().count("imported")
    assert builds >= 1

    # Same bytes under another name and place: still the same sdist.
    copy = tmp_path / "elsewhere" / sdist.name
    copy.parent.mkdir()
    copy.write_bytes(sdist.read_bytes())
    assert build(copy, refuse) == first
    assert counter.read_text().count("imported") == builds

    # Another cache directory really builds again (the counter counts).
    other = build(sdist, Resolver(helper), cache_dir=tmp_path / "other-cache")
    # The same content: the test backend stamps members with the build's
    # time, so the archives' bytes may differ by a second.
    assert other != first and wheel_files(other) == wheel_files(first)
    assert counter.read_text().count("imported") == 2 * builds


def test_failed_build_is_not_cached(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dist", "failing", "1.0", fail=True)
    for _ in range(2):
        with pytest.raises(CpkError):
            build(sdist, Resolver())
    assert not list((Context.from_environ().bucket(Bucket.BUILT_WHEELS)).rglob("*.whl"))


# -- failures --------------------------------------------------------------


def test_failure_names_the_package_and_shows_the_backend_output(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dist", "failing", "1.0", fail=True)
    with pytest.raises(CpkError) as err:
        build(sdist, Resolver())
    assert str(err.value) == "building failing 1.0 from failing-1.0.tar.gz failed"
    assert err.value.details == ["inline backend: refusing to build, FAIL_BUILD present"]


def test_failure_details_are_the_last_lines_of_stdout_and_stderr(tmp_path: Path) -> None:
    backend = _backend(
        build=(
            "import sys\n"
            "for i in range(100):\n"
            "    print('out', i, flush=True)\n"
            "    print('err', i, file=sys.stderr, flush=True)\n"
            "raise RuntimeError('compiler exploded')\n"
        )
    )
    sdist = custom_sdist(
        tmp_path / "dist",
        "noisy",
        "2.0",
        {"pyproject.toml": INLINE_PYPROJECT, "backend.py": backend},
    )
    with pytest.raises(CpkError) as err:
        build(sdist, Resolver())
    assert str(err.value) == "building noisy 2.0 from noisy-2.0.tar.gz failed"
    details = err.value.details
    assert len(details) == 20
    assert details[-1] == "RuntimeError: compiler exploded"
    assert "out 99" in details and "err 99" in details
    assert "out 0" not in details


def test_unimportable_backend_is_named(tmp_path: Path) -> None:
    pyproject = '[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n'
    sdist = custom_sdist(tmp_path / "dist", "nobackend", "1.0", {"pyproject.toml": pyproject})
    with pytest.raises(CpkError) as err:
        build(sdist, Resolver())
    assert str(err.value) == (
        "building nobackend 1.0 from nobackend-1.0.tar.gz failed: "
        "build backend 'no_such_backend' is not importable"
    )
    assert any("no_such_backend" in line for line in err.value.details)


def test_invalid_pyproject_is_one_line(tmp_path: Path) -> None:
    sdist = custom_sdist(tmp_path / "dist", "badtoml", "1.0", {"pyproject.toml": "[build-system\n"})
    with pytest.raises(CpkError) as err:
        build(sdist, refuse)
    assert str(err.value).startswith("badtoml-1.0.tar.gz: pyproject.toml is not valid TOML")
    assert "\n" not in str(err.value)


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("evil-1.0/PKG-INFO")
        content = metadata_text("evil", "1.0").encode()
        ok.size = len(content)
        tf.addfile(ok, io.BytesIO(content))
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    return path


def _member(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_member("evil-1.0/../escaped.txt"), "escapes the archive with '..'"),
        (_member("/tmp/absolute.txt"), "has an absolute path"),
        (_member("evil-1.0/link", tarfile.SYMTYPE, "../../outside"), "points outside the archive"),
        (_member("evil-1.0/abs-link", tarfile.SYMTYPE, "/etc/passwd"), "points outside"),
        (_member("evil-1.0/hard", tarfile.LNKTYPE, "../outside"), "points outside the archive"),
        (_member("evil-1.0/fifo", tarfile.FIFOTYPE), "is a device or FIFO"),
        (_member("evil-1.0/new\nline"), "control characters"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out", "fifo", "newline"],
)
def test_malicious_sdist_is_rejected_in_one_line(
    tmp_path: Path, member: tarfile.TarInfo, problem: str
) -> None:
    sdist = _tar_with(tmp_path / "evil-1.0.tar.gz", member, b"gotcha")
    with pytest.raises(CpkError) as err:
        build(sdist, refuse)
    message = str(err.value)
    assert message.startswith("evil-1.0.tar.gz: ")
    assert problem in message
    assert "\n" not in message
    assert not (tmp_path / "escaped.txt").exists()


def test_malicious_zip_sdist_is_rejected(tmp_path: Path) -> None:
    sdist = tmp_path / "evil-1.0.zip"
    with zipfile.ZipFile(sdist, "w") as zf:
        zf.writestr("evil-1.0/PKG-INFO", metadata_text("evil", "1.0"))
        zf.writestr("evil-1.0/../../escaped.txt", "gotcha")
    with pytest.raises(CpkError, match=r"^evil-1\.0\.zip: member .* escapes the archive"):
        build(sdist, refuse)


def test_zip_sdist_builds(tmp_path: Path) -> None:
    tar = make_sdist(tmp_path / "dist", "zipped", "1.0")
    sdist = tmp_path / "zipped-1.0.zip"
    with tarfile.open(tar) as tf, zipfile.ZipFile(sdist, "w") as zf:
        for m in tf.getmembers():
            zf.writestr(m.name, tf.extractfile(m).read())  # type: ignore[union-attr]
    assert build(sdist, Resolver()).name == "zipped-1.0-py3-none-any.whl"


def test_archive_that_is_not_an_sdist(tmp_path: Path) -> None:
    bogus = tmp_path / "broken-1.0.tar.gz"
    bogus.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CpkError, match=r"^broken-1\.0\.tar\.gz: not a readable sdist archive"):
        build(bogus, refuse)


# -- metadata --------------------------------------------------------------


def test_metadata_without_prepare_hook_builds_and_caches_the_wheel(tmp_path: Path) -> None:
    sdist = make_sdist(
        tmp_path / "dist", "meta-pkg", "1.5", requires_dist=["attrs>=20"], requires_python=">=3.8"
    )
    data = sdist_metadata(sdist, python=sys.executable, resolve_build_requires=Resolver())
    assert b"Name: meta-pkg" in data and b"Requires-Dist: attrs>=20" in data
    # The fallback built the wheel; building now costs nothing.
    assert build(sdist, refuse).name == "meta_pkg-1.5-py3-none-any.whl"


def test_metadata_from_prepare_hook_without_building(tmp_path: Path) -> None:
    backend = _backend(
        build="raise RuntimeError('build_wheel must not run for metadata')\n",
        prepare=True,
    )
    sdist = custom_sdist(
        tmp_path / "dist",
        "prepared",
        "3.0",
        {"pyproject.toml": INLINE_PYPROJECT, "backend.py": backend},
    )
    data = sdist_metadata(sdist, python=sys.executable, resolve_build_requires=Resolver())
    assert data.startswith(b"Metadata-Version: 2.1\nName: prepared\nVersion: 3.0\n")
    again = sdist_metadata(sdist, python=sys.executable, resolve_build_requires=refuse)
    assert again == data


def _entry_from_texts(store: Store, name: str, version: str, files: Mapping[str, str]) -> Entry:
    def populate(root: Path) -> None:
        for rel, text in files.items():
            target = root / "site-packages" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8", errors="surrogateescape")

    return add_built(store, name, version, "wheel", populate, extra={"python": {}}).entry


def _backend(build: str | None = None, prepare: bool = False) -> str:
    """A stdlib-only backend whose build_wheel runs ``build`` first."""
    body = textwrap.indent(build or "", "    ")
    source = textwrap.dedent(
        """
        import os, zipfile

        def _meta():
            return open("PKG-INFO", "rb").read()

        def _names():
            lines = _meta().decode().splitlines()
            name = lines[1].split(": ", 1)[1].replace("-", "_")
            return name, lines[2].split(": ", 1)[1]

        def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        {body}
            name, version = _names()
            filename = f"{name}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
                zf.writestr(f"{name}-{version}.dist-info/METADATA", _meta())
            return filename
        """
    ).replace("{body}\n", body + "\n" if body else "")
    if prepare:
        source += textwrap.dedent(
            """
            def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
                name, version = _names()
                info = f"{name}-{version}.dist-info"
                os.mkdir(os.path.join(metadata_directory, info))
                with open(os.path.join(metadata_directory, info, "METADATA"), "wb") as f:
                    f.write(_meta())
                return info
            """
        )
    return source
