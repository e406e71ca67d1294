"""Git repositories as a source of packages: ``name @ git+URL@REV``.

Each repository is mirrored once into the cache (``git clone --mirror``),
keyed by its URL; a revision is resolved to a commit there, and a commit is
exported with ``git archive`` as a source archive the sdist builder takes
like any other. The system ``git`` does the work: it is the standard tool,
and every transport and credential helper the user set up keeps working.

A commit already in the mirror needs no network: a locked commit is
resolved offline, and a moving branch changes nothing until the caller asks
for the branch again (``cpk lock --upgrade``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from contentpkg.context import Bucket
from contentpkg.errors import CpkError
from contentpkg.fs import writing_atomic

_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class GitRef:
    """A PEP 508 ``git+`` URL taken apart.

    ``repo`` is the repository's URL as git takes it (no ``git+``, no
    ``@rev``, no fragment); ``rev`` the revision asked for (None: the
    default branch); ``subdirectory`` the project's directory in the tree.
    """

    repo: str
    rev: str | None
    subdirectory: str | None

    def url(self, rev: str | None = None) -> str:
        """As a PEP 508 URL again, at rev (default: the one asked for)."""
        at = rev if rev is not None else self.rev
        out = "git+" + self.repo + (f"@{at}" if at else "")
        return out + (f"#subdirectory={self.subdirectory}" if self.subdirectory else "")


def vcs_source_key(commit: str, subdirectory: str | None) -> str:
    """The "sha256" a commit's source archive is known by in the store and
    the lock: the commit fixes the bytes, so a key of the commit (and the
    subdirectory) is as strong as a hash of them, and finding the entry by
    it needs no export and no build."""
    return hashlib.sha256(f"cpk-git\0{commit}\0{subdirectory or ''}".encode()).hexdigest()


def git_filename(name: str, commit: str) -> str:
    """The source archive's name: ``name-<commit>.tar.gz`` (no other dash,
    so the builder reads the project name back from it)."""
    return f"{name.replace('-', '_')}-{commit[:12]}.tar.gz"


def is_git_url(url: str) -> bool:
    return url.startswith("git+")


def parse_git_url(url: str) -> GitRef:
    """``git+https://host/r.git@v1#subdirectory=pkg`` as a :class:`GitRef`."""
    if not url.startswith("git+"):
        raise CpkError(f"{url}: not a git URL (expected git+https://, git+ssh:// or git+file://)")
    rest, _, fragment = url[4:].partition("#")
    parts = urlsplit(rest)
    if parts.scheme not in ("https", "http", "ssh", "file", "git"):
        raise CpkError(f"{url}: git over {parts.scheme or 'no scheme'} is not supported")
    path, rev = parts.path, None
    if "@" in path:
        path, _, rev = path.rpartition("@")
        rev = unquote(rev) or None
    repo = parts._replace(path=path, query="", fragment="").geturl()
    subdirectory = None
    for item in fragment.split("&"):
        key, _, value = item.partition("=")
        if key == "subdirectory" and value:
            subdirectory = value.strip("/")
            if ".." in subdirectory.split("/") or subdirectory.startswith("/"):
                raise CpkError(f"{url}: subdirectory {value!r} leaves the repository")
    return GitRef(repo=repo, rev=rev, subdirectory=subdirectory)


class GitCache:
    """The mirrors and exported archives under ``cache_dir/git-v1``."""

    def __init__(self, cache_dir: Path, *, offline: bool = False) -> None:
        self.root = Path(cache_dir) / Bucket.GIT.value
        self.offline = offline
        self._fetched: set[str] = set()

    def commit(self, ref: GitRef, locked: str | None = None) -> str:
        """The commit ref stands for: ``locked`` if the mirror has it (no
        network), else the revision resolved after fetching the repository."""
        if locked is not None and _COMMIT.fullmatch(locked):
            with self._mirror(ref.repo, fetch=False) as db:
                if db is not None and _has_commit(db, locked):
                    return locked
            with self._mirror(ref.repo, fetch=True) as db:
                assert db is not None
                if _has_commit(db, locked) or _fetch_commit(db, locked):
                    return locked
            raise CpkError(f"{ref.repo}: the locked commit {locked} is no longer in the repository")
        rev = ref.rev or "HEAD"
        if _COMMIT.fullmatch(rev):
            with self._mirror(ref.repo, fetch=False) as db:
                if db is not None and _has_commit(db, rev):
                    return rev
        with self._mirror(ref.repo, fetch=True) as db:
            assert db is not None
            if _COMMIT.fullmatch(rev) and not _has_commit(db, rev):
                _fetch_commit(db, rev)
            found = _git(db, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        commit = found.stdout.strip()
        if found.returncode != 0 or not _COMMIT.fullmatch(commit):
            raise CpkError(f"{ref.repo}: no branch, tag or commit named {rev!r}")
        return commit

    def archive(self, ref: GitRef, commit: str, name: str) -> Path:
        """The tree at commit (its subdirectory) as ``name-<commit>.tar.gz``,
        exported once and kept: the sdist builder's input."""
        sub = ref.subdirectory or ""
        key = hashlib.sha256(f"{commit}\0{sub}".encode()).hexdigest()[:16]
        final = self.root / "archives" / key / git_filename(name, commit)
        if final.is_file():
            return final
        with self._mirror(ref.repo, fetch=False) as db:
            if db is None or not _has_commit(db, commit):
                raise CpkError(f"{ref.repo}: commit {commit} is not in the cache")
            tree = f"{commit}:{sub}" if sub else commit
            if sub:
                kind = _git(db, "cat-file", "-t", tree, check=False).stdout.strip()
                if kind != "tree":
                    raise CpkError(f"{ref.repo}@{commit[:12]}: no directory {sub!r}")
            prefix = git_filename(name, commit).removesuffix(".tar.gz")
            out = _git(db, "archive", "--format=tar.gz", f"--prefix={prefix}/", tree, binary=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        with writing_atomic(final, durable=False) as handle:
            handle.write(out.stdout)
        return final

    @contextlib.contextmanager
    def _mirror(self, repo: str, *, fetch: bool) -> Iterator[Path | None]:
        """The repository's mirror, locked against other processes; fetched
        (cloned first if new) when ``fetch``; None when absent and not fetched."""
        if shutil.which("git") is None:
            raise CpkError("git is not installed; it is needed for git+ requirements")
        key = hashlib.sha256(repo.encode()).hexdigest()[:20]
        db = self.root / "db" / key
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "db").mkdir(exist_ok=True)
        with open(self.root / "db" / f"{key}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not fetch:
                yield db if (db / "HEAD").is_file() else None
                return
            if self.offline and not repo.startswith("file:"):  # a local repository is no network
                raise CpkError(f"{repo}: not in the cache, and --offline forbids fetching it")
            if repo not in self._fetched:
                if (db / "HEAD").is_file():
                    _git(db, "fetch", "--quiet", "--prune", "--force", "origin", network=repo)
                else:
                    staged = db.with_name(f".{key}.{os.getpid()}")
                    shutil.rmtree(staged, ignore_errors=True)
                    _run(
                        ["git", "clone", "--quiet", "--mirror", repo, os.fspath(staged)],
                        network=repo,
                    )
                    os.rename(staged, db)
                self._fetched.add(repo)
            yield db


def _fetch_commit(db: Path, commit: str) -> bool:
    """Fetch one commit by its id: for a commit no branch or tag reaches any
    more (a force-push), which servers that allow it still serve."""
    fetched = _git(db, "fetch", "--quiet", "origin", commit, check=False)
    return fetched.returncode == 0 and _has_commit(db, commit)


def _has_commit(db: Path, commit: str) -> bool:
    return _git(db, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def _git(
    db: Path, *args: str, check: bool = True, binary: bool = False, network: str | None = None
) -> subprocess.CompletedProcess:
    return _run(["git", "--git-dir", os.fspath(db), *args], check, binary, network)


def _run(
    argv: list[str], check: bool = True, binary: bool = False, network: str | None = None
) -> subprocess.CompletedProcess:
    # No prompts: a missing credential is an error line, not a hung command.
    env = {**_clean_env(), "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(argv, capture_output=True, text=not binary, env=env, check=False)
    except OSError as exc:
        raise CpkError(f"cannot run git: {exc.strerror}") from None
    if check and done.returncode != 0:
        err = done.stderr.decode(errors="replace") if binary else done.stderr
        last = next((ln for ln in reversed(err.strip().splitlines()) if ln.strip()), "")
        what = f"fetching {network}" if network else f"git {argv[3] if len(argv) > 3 else ''}"
        raise CpkError(f"{what} failed: {last.strip() or f'exit status {done.returncode}'}")
    return done


def _clean_env() -> dict[str, str]:
    """This process's environment without git's repository overrides: a
    ``GIT_DIR`` set by a hook or a test run must not redirect the mirror."""
    from contentpkg.context import Context

    env = dict(Context.from_environ().environ)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        env.pop(var, None)
    return env
