"""Git and URL dependencies: locked to a commit or a hash, built once into the store.

A local git repository reached through ``git+file://`` (a user-declared
source, which cpk allows; ``file:`` links on index pages stay refused) and
archives served by a loopback index. The repository's backend appends a
line to a log file on every wheel build, so the tests count builds rather
than time them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import INLINE_BACKEND, make_sdist, make_wheel, metadata_text

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def write_project(root: Path, name: str, version: str, log: Path) -> None:
    """A source tree the inline backend builds, logging each build."""
    root.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    (root / "PKG-INFO").write_text(metadata_text(name, version, (), None))
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "inline_backend"\nbackend-path = ["."]\n'
    )
    counting = INLINE_BACKEND.replace(
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n",
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        f"    open({str(log)!r}, 'a').write('built\\n')\n",
    )
    assert counting != INLINE_BACKEND
    (root / "inline_backend.py").write_text(counting)
    (root / "build-requires.txt").write_text("")
    (root / "src" / dist).mkdir(parents=True, exist_ok=True)
    (root / "src" / dist / "__init__.py").write_text(f"__version__ = {version!r}\n")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_project(root, "gitpkg", "1.0", tmp_path / "builds.log")
    commit_all(root, "1.0")
    return root


def builds(tmp_path: Path) -> int:
    log = tmp_path / "builds.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def app(root: Path, deps: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "1"\ndependencies = [{deps}]\n{extra}'
    )
    return root


def locked(root: Path) -> dict[str, dict]:
    data = tomllib.loads((root / "pylock.toml").read_text())
    return {p["name"]: p for p in data["packages"]}


VERSION = "import gitpkg; print(gitpkg.__version__)"


def test_git_dependency_locks_a_commit_builds_once_and_holds_until_upgrade(
    tmp_path: Path, repo: Path
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    url = f"git+{repo.as_uri()}@main"
    root = app(tmp_path / "app", f'"gitpkg @ {url}"')
    run_cpk("lock", "--offline", cwd=root, check=True)
    vcs = locked(root)["gitpkg"]["vcs"]
    assert vcs == {
        "type": "git",
        "url": repo.as_uri(),
        "requested-revision": "main",
        "commit-id": first,
    }
    out = run_cpk("run", "python", "-c", VERSION, cwd=root, check=True)
    assert out.stdout.strip() == "1.0"
    assert builds(tmp_path) == 1

    # Present in the store: no build, no fetch, whatever else changes.
    lock_bytes = (root / "pylock.toml").read_bytes()
    synced = run_cpk("sync", cwd=root, check=True)
    assert "0 built" in synced.stderr
    shutil.rmtree(root / ".venv", ignore_errors=True)
    os.unlink(root / ".venv") if os.path.islink(root / ".venv") else None
    assert run_cpk("run", "python", "-c", VERSION, cwd=root, check=True).stdout.strip() == "1.0"
    assert builds(tmp_path) == 1

    # The branch moves upstream: the locked commit stays, even through a relock.
    write_project(repo, "gitpkg", "2.0", tmp_path / "builds.log")
    second = commit_all(repo, "2.0")
    assert run_cpk("lock", "--check", cwd=root).returncode == 0
    assert run_cpk("run", "python", "-c", VERSION, cwd=root, check=True).stdout.strip() == "1.0"
    assert (root / "pylock.toml").read_bytes() == lock_bytes
    app(root, f'"gitpkg @ {url}", "gitpkg >= 1"')  # another input: the lock is redone
    # ... with an empty cache: the metadata comes from the store's entry, no build.
    run_cpk("lock", cwd=root, env={"CPK_CACHE_DIR": str(tmp_path / "empty-cache")}, check=True)
    assert locked(root)["gitpkg"]["vcs"]["commit-id"] == first
    assert builds(tmp_path) == 1

    # Until asked: --upgrade fetches the branch again.
    run_cpk("lock", "--upgrade", cwd=root, check=True)
    assert locked(root)["gitpkg"]["vcs"]["commit-id"] == second
    assert "1 built" in run_cpk("sync", cwd=root, check=True).stderr
    assert builds(tmp_path) == 2

    # The lock is a gc root for what it names, a commit's entry included (no
    # view holds the new entry yet).
    run_cpk("store", "gc", check=True)
    assert "0 built" in run_cpk("sync", cwd=root, check=True).stderr
    assert run_cpk("run", "python", "-c", VERSION, cwd=root, check=True).stdout.strip() == "2.0"
    assert builds(tmp_path) == 2


def test_a_locked_commit_no_branch_reaches_is_fetched_by_its_id(tmp_path: Path, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    root = app(tmp_path / "app", f'"gitpkg @ git+{repo.as_uri()}@main"')
    run_cpk("lock", cwd=root, check=True)
    # Upstream rewrites history: main no longer reaches the locked commit.
    git(repo, "checkout", "-q", "--orphan", "rewritten")
    write_project(repo, "gitpkg", "3.0", tmp_path / "builds.log")
    commit_all(repo, "3.0")
    git(repo, "branch", "-f", "main", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", "rewritten")
    fresh = {"CPK_HOME": str(tmp_path / "home2"), "CPK_CACHE_DIR": str(tmp_path / "cache2")}
    out = run_cpk("run", "--frozen", "python", "-c", VERSION, cwd=root, env=fresh)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"
    assert locked(root)["gitpkg"]["vcs"]["commit-id"] == first


def test_uv_git_source_with_tag_and_subdirectory(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_project(repo / "python" / "sub", "subpkg", "0.5", tmp_path / "builds.log")
    (repo / "README").write_text("not a python project at the top\n")
    tagged = commit_all(repo, "0.5")
    git(repo, "tag", "v0.5")
    write_project(repo / "python" / "sub", "subpkg", "0.6", tmp_path / "builds.log")
    commit_all(repo, "0.6")
    root = app(
        tmp_path / "app",
        '"subpkg"',
        "[tool.uv.sources]\n"
        f'subpkg = {{ git = "{repo.as_uri()}", tag = "v0.5", subdirectory = "python/sub" }}\n',
    )
    out = run_cpk("run", "python", "-c", "import subpkg; print(subpkg.__version__)", cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.5"
    assert locked(root)["subpkg"]["vcs"] == {
        "type": "git",
        "url": repo.as_uri(),
        "requested-revision": "v0.5",
        "commit-id": tagged,
        "subdirectory": "python/sub",
    }


def test_unknown_revision_is_one_line(tmp_path: Path, repo: Path) -> None:
    root = app(tmp_path / "app", f'"gitpkg @ git+{repo.as_uri()}@nope"')
    out = run_cpk("lock", cwd=root)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"cpk: error: {repo.as_uri()}: no branch, tag or commit named 'nope'"
    ]


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "served"
    make_sdist(root, "arch", "1.0")
    make_wheel(root, "wheely", "2.0")
    with LocalIndex(root) as index:
        yield index


def test_archive_urls_are_locked_with_their_hash_and_checked(
    tmp_path: Path, served: LocalIndex
) -> None:
    sdist_url = served.base_url + served.file_path("arch-1.0.tar.gz")
    wheel_url = served.base_url + served.file_path("wheely-2.0-py3-none-any.whl")
    root = app(tmp_path / "app", f'"arch @ {sdist_url}", "wheely @ {wheel_url}"')
    probe = "import arch, wheely; print(arch.BUILT_FROM_SDIST, wheely.__version__)"
    out = run_cpk("run", "python", "-c", probe, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "2.0"]
    packages = locked(root)
    digest = hashlib.sha256((served.root / "arch-1.0.tar.gz").read_bytes()).hexdigest()
    assert packages["arch"]["archive"]["url"] == sdist_url
    assert packages["arch"]["archive"]["hashes"] == {"sha256": digest}
    assert packages["arch"]["version"] == "1.0"
    assert "archive" in packages["wheely"]
    # Relocking (another input changed) downloads no locked archive again.
    served.clear_log()
    app(root, f'"arch @ {sdist_url}", "wheely @ {wheel_url}", "arch>=1"')
    run_cpk("lock", cwd=root, check=True)
    assert locked(root)["arch"]["archive"] == packages["arch"]["archive"]
    assert served.requests == []
    fetched = run_cpk("fetch", f"wheely @ {wheel_url}", "--index-url", served.url, check=True)
    assert fetched.stdout.split()[:2] == ["wheely", "2.0"]

    # A fresh store must download it again: bytes that differ are refused.
    served.corrupt("arch-1.0.tar.gz")
    fresh = {"CPK_HOME": str(tmp_path / "home2"), "CPK_CACHE_DIR": str(tmp_path / "cache2")}
    refused = run_cpk("sync", cwd=root, env=fresh)
    assert refused.returncode == 1
    assert "sha256 mismatch" in refused.stderr and "Traceback" not in refused.stderr

    # A URL's own #sha256= is checked when locking.
    other = app(tmp_path / "other", f'"arch @ {sdist_url}#sha256={"0" * 64}"')
    refused = run_cpk("lock", cwd=other, env=fresh)
    assert refused.returncode == 1
    assert "sha256 mismatch" in refused.stderr and "Traceback" not in refused.stderr
    assert f"(expected {'0' * 64} from the URL's #sha256, got " in refused.stderr
    assert not (other / "pylock.toml").exists()


def test_requirements_file_git_line(tmp_path: Path, repo: Path) -> None:
    project = tmp_path / "reqs"
    project.mkdir()
    (project / "requirements.txt").write_text(
        textwrap.dedent(f"""
        # a bare URL, as pip reads it
        git+{repo.as_uri()}@main#egg=gitpkg
        """)
    )
    out = run_cpk("run", "python", "-c", VERSION, cwd=project)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"
    assert (project / "pylock.toml").is_file()


@pytest.mark.network
def test_real_git_dependency_from_a_public_host(tmp_path: Path) -> None:
    """A small pure-Python project straight from GitHub, at a tag."""
    probe = subprocess.run(
        ["git", "ls-remote", "https://github.com/pypa/sampleproject", "HEAD"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip("github.com is not reachable over git")
    root = app(
        tmp_path / "app",
        '"sampleproject @ git+https://github.com/pypa/sampleproject@v4.0.0"',
    )
    out = run_cpk("run", "python", "-c", "import sample; print(sample.__name__)", cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sample"
    assert len(locked(root)["sampleproject"]["vcs"]["commit-id"]) == 40


def test_a_dependency_naming_a_git_url_needs_the_project_to_require_it(
    tmp_path: Path, repo: Path
) -> None:
    url = f"git+{repo.as_uri()}@main"
    dists = tmp_path / "dists"
    make_wheel(dists, "uses-git", "1.0", requires_dist=[f"gitpkg @ {url}"])
    with LocalIndex(dists) as index:
        root = app(tmp_path / "app", '"uses-git"')
        refused = run_cpk("lock", "--index-url", index.url, cwd=root)
        assert refused.returncode == 1
        assert f"require gitpkg @ {url} in the project itself" in refused.stderr
        app(root, f'"uses-git", "gitpkg @ {url}"')
        run_cpk("lock", "--index-url", index.url, cwd=root, check=True)
        assert set(locked(root)) == {"uses-git", "gitpkg"}
