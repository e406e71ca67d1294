"""The real Debian archive: cpk fetches and installs programs with large closures.

Marked ``network``: ``python3 -m pytest -m network tests/elf/test_debian_archive_network.py``.
cpk reads the machine's apt sources, verifies the archive, resolves,
downloads and installs into a temporary WHERE, as an unprivileged user
created for the test (CI runs as root): ``graphviz`` (``dot -Tpng``,
``-Tsvg``; its layout and render plugins are loaded with ``dlopen``),
``imagemagick`` (``convert`` with coder modules and delegates),
``gnuplot-nox`` (a PNG plot) and ``gawk`` (an extension module). Each
program does real work from WHERE and from a ``cp -a`` copy of it; under
``LD_DEBUG=libs`` every library and plugin but glibc's must come from the
env dir in use, and every file under ``/usr`` or ``/etc`` a program still
opens (``strace``) must be named by the install report. The plugins,
coders and extensions are found through the launchers cpk writes from
``elf/program_env.toml`` (GVBINDIR, MAGICK_*_PATH, AWKLIBPATH), and the
report must say so; graphviz's ``config6a`` comes from its post-install
step. The user made for the test is removed at teardown.

``convert`` and ``gnuplot`` are names update-alternatives gives from
maintainer scripts, which cpk does not run; the packages ship
``convert-im6.q16`` and ``gnuplot-nox``, and those are run.

Problems are collected across all programs and reported together, so one
run shows everything that is not yet right.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.network

USER = "cpk-archive-test"
PACKAGES = ("graphviz", "imagemagick", "gnuplot-nox", "gawk")

#: What glibc itself opens: the loader's cache, locales, NSS, time zones.
_GLIBC_FILES = re.compile(
    r"^/etc/(ld\.so\.(cache|preload)|nsswitch\.conf|passwd|group|localtime|host\.conf|"
    r"resolv\.conf|hosts|gai\.conf)$|^/usr/lib/locale/|^/usr/share/locale/locale\.alias$|"
    r"^/usr/lib/x86_64-linux-gnu/gconv/|^/usr/share/zoneinfo/|^/usr/lib/x86_64-linux-gnu/"
    r"(libc|libm|libpthread|libdl|librt|libresolv|libcrypt|libnss_[a-z]+|ld-linux[^/]*)\.so"
)
_GLIBC_SONAMES = re.compile(
    r"^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libcrypt|"
    r"libmvec|libnss_\w+)\.so\.\d+$|^ld-linux.*\.so\.\d+$"
)


@pytest.fixture
def test_user() -> Iterator[str | None]:
    """A system user made for the test (CI runs as root), removed at teardown.

    The name is this test's own: one left behind by an interrupted run is
    taken over and removed too.
    """
    if os.geteuid() != 0:
        yield None
        return
    for tool in ("setpriv", "useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"running as root without {tool} to drop privileges")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", USER],
            check=True,
        )
    try:
        yield USER
    finally:
        subprocess.run(["userdel", USER], check=False)


def _user_prefix(sandbox: Path, user: str | None) -> list[str]:
    """Run as the test's user; else (this Python unreachable by it) as root
    with every capability dropped, as ``test_jq_deb`` does."""
    if user is None:
        return []
    entry = pwd.getpwnam(user)
    as_user = [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
    ]
    probe = subprocess.run(
        [*as_user, sys.executable, "-c", "import contentpkg, debian"],
        capture_output=True,
        env=_env(sandbox),
    )
    if probe.returncode == 0:
        os.chown(sandbox, entry.pw_uid, entry.pw_gid)
        return as_user
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


def _env(sandbox: Path) -> dict[str, str]:
    src = Path(__file__).resolve().parents[2] / "src"
    environ = {k: v for k, v in os.environ.items() if k != "CPK_APT_SOURCES"}  # the machine's
    return dict(
        environ,
        HOME=str(sandbox),
        CPK_HOME=str(sandbox / "home"),
        CPK_CACHE_DIR=str(sandbox / "cache"),
        PYTHONPATH=str(src),
    )


@pytest.fixture
def sandbox() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cpk-archive-"))
    os.chmod(root, 0o755)
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _work(where: Path, out: Path) -> dict[str, list[str]]:
    """Real work with each program from where: name -> argv (run in out)."""
    (out / "g.dot").write_text("digraph { a -> b -> c; a -> c; }\n")
    bindir = where / "bin"
    return {
        "dot-png": [str(bindir / "dot"), "-Tpng", "-o", str(out / "g.png"), str(out / "g.dot")],
        "dot-svg": [str(bindir / "dot"), "-Tsvg", "-o", str(out / "g.svg"), str(out / "g.dot")],
        "convert-coders": [
            str(bindir / "convert-im6.q16"),
            "-size",
            "32x32",
            "gradient:red-blue",
            "-rotate",
            "90",
            str(out / "c.jpg"),
        ],
        "convert-delegates": [str(bindir / "convert-im6.q16"), "-list", "delegate"],
        "gnuplot": [
            str(bindir / "gnuplot-nox"),
            "-e",
            f"set terminal png; set output '{out / 'p.png'}'; plot sin(x)",
        ],
        "gawk-extension": [
            str(bindir / "gawk"),
            "-l",
            "filefuncs",
            'BEGIN { stat("/", st); print st["type"] }',
        ],
    }


def _check_output(
    name: str, label: str, out: Path, proc: subprocess.CompletedProcess[str]
) -> str | None:
    if proc.returncode != 0:
        return f"{label}: exit {proc.returncode}: {_tail(proc.stderr)}"
    checks = {
        "dot-png": lambda: (out / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n",
        "dot-svg": lambda: "<svg" in (out / "g.svg").read_text(),
        "convert-coders": lambda: (out / "c.jpg").read_bytes()[:3] == b"\xff\xd8\xff",
        "convert-delegates": lambda: "=>" in proc.stdout,
        "gnuplot": lambda: (out / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n",
        "gawk-extension": lambda: proc.stdout.strip() == "directory",
    }
    try:
        ok = checks[name]()
    except OSError as exc:
        return f"{label}: no output: {exc}"
    return None if ok else f"{label}: wrong output: {_tail(proc.stdout)}"


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])[:400]


def _loaded(ld_debug: str) -> list[str]:
    """Every object the loader initialised (programs' libraries and dlopen'ed plugins)."""
    return [
        line.split("calling init: ", 1)[1].strip()
        for line in ld_debug.splitlines()
        if "calling init: " in line
    ]


def _opened(trace: Path) -> set[str]:
    """Files under /usr or /etc opened successfully (strace -f -e openat,open,stat...)."""
    found = set()
    pattern = re.compile(r'(?:openat\(AT_FDCWD, |open\(|execve\()"(/(?:usr|etc)/[^"]+)".* = (\d+)')
    for line in trace.read_text(errors="replace").splitlines():
        m = pattern.search(line)
        # /usr/local is no package's: not a compiled-in path into one.
        if m and not _GLIBC_FILES.search(m.group(1)) and not m.group(1).startswith("/usr/local/"):
            found.add(m.group(1))
    return found


def _run_all(
    prefix: list[str], where: Path, out: Path, env: dict[str, str], report: str, problems: list[str]
) -> None:
    out.mkdir(exist_ok=True)
    for name, argv in _work(where, out).items():
        trace = out / f"{name}.strace"
        debug = out / f"{name}.lddebug"
        # Set for the traced program only: strace's own libraries are not the question.
        strace = ["strace", "-f", "-qq", "-e", "trace=open,openat,execve", "-o", str(trace),
                  "-E", "LD_DEBUG=libs", "-E", f"LD_DEBUG_OUTPUT={debug}"]  # fmt: skip
        proc = subprocess.run(
            [*prefix, *strace, *argv], capture_output=True, text=True, cwd=out,
            env=env, timeout=300,
        )  # fmt: skip
        ld_debug = "".join(p.read_text(errors="replace") for p in out.glob(f"{name}.lddebug.*"))
        label = f"{name} [{where.name}]"
        problem = _check_output(name, label, out, proc)
        if problem:
            problems.append(problem)
        for path in _loaded(ld_debug):
            base = os.path.basename(path)
            if _GLIBC_SONAMES.match(base) or path == argv[0]:
                continue
            if not os.path.realpath(path).startswith(str(where) + "/"):
                problems.append(f"{label}: {base} loaded from {path}, not from {where}")
        unnamed: dict[str, int] = {}
        for path in sorted(_opened(trace)):
            if not any(part in report for part in _parents(path)):
                directory = os.path.dirname(path)
                unnamed[directory] = unnamed.get(directory, 0) + 1
        for directory, count in sorted(unnamed.items()):
            problems.append(
                f"{label}: opens {count} file(s) in {directory}; not named by the install report"
            )


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 2, -1)]


#: Compiled-in lookups the launchers must point into WHERE (program_env.toml).
_REDIRECTED = {
    "/usr/lib/x86_64-linux-gnu/graphviz": "GVBINDIR",
    "/usr/lib/x86_64-linux-gnu/gawk": "AWKLIBPATH",
    "/etc/ImageMagick-6": "MAGICK_CONFIGURE_PATH",
}


def test_programs_with_large_closures_from_the_archive(
    sandbox: Path, test_user: str | None
) -> None:
    if shutil.which("strace") is None:
        pytest.skip("needs strace to see which system files the programs open")
    if os.uname().machine != "x86_64":
        pytest.skip("the glibc file patterns are written for x86_64")
    prefix = _user_prefix(sandbox, test_user)
    env = _env(sandbox)
    where = sandbox / "where"
    problems: list[str] = []
    reports = []
    for package in PACKAGES:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "contentpkg", "install", package, str(where)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        reports.append(proc.stderr)
        if proc.returncode != 0:
            problems.append(f"cpk install {package}: exit {proc.returncode}: {_tail(proc.stderr)}")
    report = "\n".join(reports)
    (sandbox / "install-report.txt").write_text(report)
    for path, variable in _REDIRECTED.items():
        said = rf"read {re.escape(path)} \S+ redirected to WHERE/\S+ by {variable}"
        if not re.search(said, report):
            problems.append(f"the install report does not say {path} is redirected by {variable}")
    _run_all(prefix, where, sandbox / "out", env, report, problems)
    copy = sandbox / "copy"
    subprocess.run([*prefix, "cp", "-a", str(where), str(copy)], check=True)
    _run_all(prefix, copy, sandbox / "out-copy", env, report, problems)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
