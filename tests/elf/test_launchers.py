"""Launchers: a program's compiled-in lookups pointed into WHERE by a variable.

The package is built here: ``libgvc9`` (a name ``program_env.toml`` knows,
as graphviz's ``libgvc[0-9]*``) holds a program that reads
``<dir>/config6a``, where ``<dir>`` is ``GVBINDIR`` or else the compiled-in
``/usr/lib/<triplet>/graphviz``, and writes that file when run with ``-c``
(what Debian's maintainer script does). ``dot`` and ``circo`` are links to
it, and it prints the name it was run under, as graphviz chooses its layout
by that name. Without the launcher the program reads the system's path
(absent here); with it, WHERE's copy, from WHERE and from a ``cp -a`` copy.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.debs import ARCH, dpkg_build, needs_dpkg_deb
from support.elfbuild import CC, needs_cc

TRIPLET = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
COMPILED = f"/usr/lib/{TRIPLET}/graphviz"

pytestmark = [needs_cc, needs_dpkg_deb]

PROGRAM = r"""
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
  const char *dir = getenv("GVBINDIR");
  if (!dir) dir = "COMPILED";
  char path[4096];
  snprintf(path, sizeof path, "%s/config6a", dir);
  if (argc > 1 && strcmp(argv[1], "-c") == 0) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    fprintf(f, "libgvplugin_demo.so.9 demo\n");
    return fclose(f) != 0;
  }
  FILE *f = fopen(path, "r");
  if (!f) { perror(path); return 2; }
  char line[256] = {0};
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  printf("%s %s %s", basename(argv[0]), dir, line);
  return 0;
}
"""


def _build(work: Path) -> Path:
    tree = work / "libgvc9"
    src = work / "gvc.c"
    src.write_text(PROGRAM.replace("COMPILED", COMPILED))
    (tree / "usr/sbin").mkdir(parents=True)
    assert CC is not None
    subprocess.run(
        [CC, "-o", str(tree / "usr/sbin/libgvc9-config-update"), str(src)],
        check=True,
        capture_output=True,
    )
    (tree / "usr/bin").mkdir()
    os.symlink("../sbin/libgvc9-config-update", tree / "usr/bin/dot")
    os.symlink("dot", tree / "usr/bin/circo")
    plugins = tree / "usr/lib" / TRIPLET / "graphviz"
    plugins.mkdir(parents=True)
    (plugins / "libgvplugin_demo.so.9").write_text("not really a plugin\n")
    control = {"Package": "libgvc9", "Description": "a graphviz look-alike"}
    return dpkg_build(tree, work / "libgvc9.deb", control)


def _run(program: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GVBINDIR"}
    return subprocess.run([program], capture_output=True, text=True, env=env)


def test_launcher_points_the_compiled_in_path_into_where(tmp_path: Path, cpk_home: Path) -> None:
    if os.path.exists(COMPILED):
        pytest.skip(f"this machine has {COMPILED}: the system's copy would answer")
    run_cpk("store", "add", _build(tmp_path), check=True)
    where = tmp_path / "where"
    proc = run_cpk("install", "libgvc9", where, check=True)
    report = proc.stderr
    config = f"lib/{TRIPLET}/graphviz/config6a"

    # The report says which variable redirects the compiled-in path, and the
    # post-install step ran in WHERE and is recorded.
    assert (
        f"read {COMPILED} \u2014 redirected to WHERE/lib/{TRIPLET}/graphviz by GVBINDIR"
    ) in report
    assert f"ran bin/libgvc9-config-update-1.0 -c (wrote {config})" in report
    assert (where / config).read_text() == "libgvplugin_demo.so.9 demo\n"
    manifest = json.loads((where / ".cpk/manifest.json").read_text())
    assert set(manifest["post_install"]) == {config}
    assert manifest["files"]["bin/dot"]["generated"] == "launcher"

    # Each name is its own launcher; the real program keeps the name it was
    # run under, and the loader sees the same ELF file as without a launcher.
    assert (where / "bin/dot").read_text().startswith("#!/bin/sh\n")
    unwrapped = where / "bin/.unwrapped"
    assert filecmp.cmp(unwrapped / "circo", unwrapped / "dot", shallow=False)
    assert os.path.islink(unwrapped / "dot") and not os.path.islink(
        os.path.realpath(unwrapped / "dot")
    )
    for copy in (where, tmp_path / "copy"):
        if copy != where:
            subprocess.run(["cp", "-a", str(where), str(copy)], check=True)
        for name in ("dot", "circo"):
            out = _run(copy / "bin" / name)
            assert out.returncode == 0, out.stderr
            expected = f"{name} {copy}/lib/{TRIPLET}/graphviz libgvplugin_demo.so.9 demo\n"
            assert out.stdout == expected
        # Without the launcher the compiled-in path is read: absent here.
        bare = _run(copy / "bin/.unwrapped/dot")
        assert bare.returncode == 2 and COMPILED in bare.stderr

    # cpk ldd follows the launcher to the program; env --check finds nothing changed.
    ldd = run_cpk("ldd", where / "bin/dot", check=True)
    assert "a cpk launcher; it sets GVBINDIR and runs" in ldd.stderr
    assert ldd.stdout.startswith(f"{where}/bin/.unwrapped/dot (program;")
    check = run_cpk("env", "--check", where)
    assert check.returncode == 0, check.stdout + check.stderr

    # A file the post-install step wrote is checked against the hash
    # recorded when it ran: changed, then missing, each one line naming it.
    step = "post-install step bin/libgvc9-config-update-1.0 -c"
    (where / config).write_text("libgvplugin_other.so.9 other\n")
    check = run_cpk("env", "--check", where)
    lines = [ln for ln in check.stderr.splitlines() if config in ln]
    assert check.returncode == 1 and len(lines) == 1, check.stderr
    assert f"{config}: content changed (written by the {step})" in lines[0]
    (where / config).unlink()
    check = run_cpk("env", "--check", where)
    lines = [ln for ln in check.stderr.splitlines() if config in ln]
    assert check.returncode == 1 and len(lines) == 1, check.stderr
    assert f"{config}: missing (written by the {step}; install again to rerun it)" in lines[0]
    # Installing again reruns the step; the check is clean again.
    run_cpk("install", "libgvc9", where, check=True)
    assert (where / config).read_text() == "libgvplugin_demo.so.9 demo\n"
    assert run_cpk("env", "--check", where).returncode == 0

    # A changed launcher is named like any changed file of WHERE.
    os.chmod(where / "bin/dot", 0o755)
    (where / "bin/dot").write_text("#!/bin/sh\nexit 0\n")
    check = run_cpk("env", "--check", where)
    assert check.returncode != 0 and "bin/dot" in check.stdout + check.stderr

    # Uninstalling removes the step's file along with everything else.
    run_cpk("uninstall", "libgvc9", "--from", where, check=True)
    assert not (where / config).exists() and not (where / "bin").exists()


def test_launcher_finds_where_through_outside_links_and_keeps_search_paths(
    tmp_path: Path,
) -> None:
    """A launcher reached through a symlink from outside WHERE (a user's
    ~/bin) still finds WHERE; a "prefix" variable keeps the caller's value
    after WHERE's paths, and "." stays the working directory."""
    from contentpkg.elf.launchers import UNWRAPPED, Variable, launcher_text

    where = tmp_path / "my env"  # a space, which the launcher must quote
    (where / "bin" / UNWRAPPED).mkdir(parents=True)
    real = where / "bin/prog-1"
    real.write_text('#!/bin/sh\necho "${0##*/}|$AWKPATH|$MAGICK_CONFIGURE_PATH"\n')
    real.chmod(0o755)
    os.symlink("../prog-1", where / "bin" / UNWRAPPED / "prog")
    variables = [
        Variable("AWKPATH", (".", "share/awk"), False, "gawk"),
        Variable("MAGICK_CONFIGURE_PATH", ("etc/im", "share/im"), True, "im"),
    ]
    (where / "bin/prog").write_text(launcher_text("prog", variables))
    (where / "bin/prog").chmod(0o555)
    home_bin = tmp_path / "home-bin"
    home_bin.mkdir()
    os.symlink(where / "bin/prog", home_bin / "alias")
    env = {"PATH": f"{home_bin}:/usr/bin:/bin", "MAGICK_CONFIGURE_PATH": "/mine"}
    for argv0 in ("alias", str(home_bin / "alias"), str(where / "bin/prog")):
        out = subprocess.run([argv0], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"prog|.:{where}/share/awk|{where}/etc/im:{where}/share/im:/mine\n"
    # A relative $0 under a CDPATH that would make cd print: still one directory.
    out = subprocess.run(
        ["bin/prog"], env=dict(env, CDPATH=str(where)), capture_output=True, text=True, cwd=where
    )
    assert out.returncode == 0 and out.stdout.startswith(f"prog|.:{where}/share/awk|"), out
    del env["MAGICK_CONFIGURE_PATH"]
    out = subprocess.run([where / "bin/prog"], env=env, capture_output=True, text=True)
    assert out.stdout.endswith(f"|{where}/etc/im:{where}/share/im\n")


def test_the_shipped_table_names_variables_inside_where_and_complete_steps() -> None:
    from contentpkg.elf.launchers import rules_for, table

    packages = table()
    assert {"libgvc[0-9]*", "libmagickcore-6.q16-*", "gawk"} <= set(packages)
    for spec in packages.values():
        for value in spec.get("env", {}).values():
            for item in [value] if isinstance(value, str) else value:
                assert not item.startswith("/") and ".." not in item.split("/")
        assert set(spec.get("prefix", [])) <= set(spec.get("env", {}))
    # Soname bumps rename library packages: the patterns still match.
    assert [p for p, _ in rules_for(["libgvc6", "libmagickcore-6.q16-7t64", "jq"])] == [
        "libgvc6",
        "libmagickcore-6.q16-7t64",
    ]


DATA_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
  const char *dir = getenv("VAR");
  char path[4096];
  if (dir) snprintf(path, sizeof path, "%s%s", dir, "NAME");
  else snprintf(path, sizeof path, "%s%s", "COMPILED", "TAIL");
  FILE *f = fopen(path, "r");
  if (!f) { perror(path); return 2; }
  char line[256] = {0};
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  printf("%s", line);
  return 0;
}
"""


@pytest.mark.parametrize(
    ("lib", "data", "variable", "name", "compiled", "tail", "data_file", "redirected_to"),
    [
        # libthai opens $LIBTHAI_DICTDIR/thbrk.tri; its binary holds the file's path.
        (
            "libthai0", "libthai-data", "LIBTHAI_DICTDIR", "/thbrk.tri",
            "/usr/share/libthai/thbrk.tri", "", "usr/share/libthai/thbrk.tri",
            "share/libthai/thbrk.tri",
        ),
        # libX11 reads $XLOCALEDIR/locale.dir; its binary holds the directory.
        (
            "libx11-6", "libx11-data", "XLOCALEDIR", "/locale.dir",
            "/usr/share/X11/locale", "/locale.dir", "usr/share/X11/locale/locale.dir",
            "share/X11/locale",
        ),
        # libxkbcommon reads layouts below $XKB_CONFIG_ROOT.
        (
            "libxkbcommon0", "xkb-data", "XKB_CONFIG_ROOT", "/rules/evdev",
            "/usr/share/X11/xkb", "/rules/evdev", "usr/share/X11/xkb/rules/evdev",
            "share/X11/xkb",
        ),
        # fontconfig reads $FONTCONFIG_FILE, the configuration file itself.
        (
            "libfontconfig1", "fontconfig-config", "FONTCONFIG_FILE", "",
            "/etc/fonts/fonts.conf", "", "etc/fonts/fonts.conf", "etc/fonts/fonts.conf",
        ),
    ],
)  # fmt: skip
def test_data_read_by_a_library_at_a_compiled_in_path_comes_from_where(
    tmp_path: Path,
    cpk_home: Path,
    lib: str,
    data: str,
    variable: str,
    name: str,
    compiled: str,
    tail: str,
    data_file: str,
    redirected_to: str,
) -> None:
    """The shipped table's entries for libthai, libX11, xkbcommon and fontconfig: a program
    whose closure holds the library reads the data package's copy in WHERE
    (and in a copy of WHERE), and the report names the path as redirected."""
    from support.debs import Deb

    src = tmp_path / "prog.c"
    src.write_text(
        DATA_PROGRAM.replace("VAR", variable)
        .replace("NAME", name)
        .replace("COMPILED", compiled)
        .replace("TAIL", tail)
    )
    assert CC is not None
    binary = tmp_path / "prog"
    subprocess.run([CC, "-O0", "-o", str(binary), str(src)], check=True, capture_output=True)
    text = f"{data}'s copy\n"
    lib_deb = Deb(
        lib, architecture=ARCH, fields={"Depends": data},
        files={f"usr/bin/{lib}-demo": binary.read_bytes()},
    ).build(tmp_path / f"{lib}.deb")  # fmt: skip
    data_deb = Deb(data, architecture="all", files={data_file: text.encode()}).build(
        tmp_path / f"{data}.deb"
    )
    run_cpk("store", "add", lib_deb, data_deb, check=True)
    where = tmp_path / "where"
    report = run_cpk("install", lib, where, check=True).stderr
    assert f"read {compiled} \u2014 redirected to WHERE/{redirected_to} by {variable}" in report, (
        report
    )
    if lib == "libfontconfig1":
        # What the variables cannot redirect is said, not implied.
        assert "fonts are read from the directories fonts.conf names" in report
        assert "not from WHERE/share/fonts" in report
    env = {k: v for k, v in os.environ.items() if k != variable}
    for copy in (where, tmp_path / "copy"):
        if copy != where:
            subprocess.run(["cp", "-a", str(where), str(copy)], check=True)
        out = subprocess.run(
            [copy / "bin" / f"{lib}-demo"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout == text, out.stderr
    bare = subprocess.run([where / "bin/.unwrapped" / f"{lib}-demo"], env=env, capture_output=True)
    assert bare.stdout != text.encode()  # the compiled-in path: the system's copy, or nothing


def test_a_reader_whose_package_takes_no_variable_keeps_its_state(
    tmp_path: Path, cpk_home: Path
) -> None:
    """libX11 (here: a program in libx11-6) honours XLOCALEDIR, and so does
    xkbcommon, whose table entry sets it too though the launcher took
    libX11's value; another library of the closure that names the same
    directory (as GTK 3 does) takes no variable, so its line says so."""
    from support.debs import Deb
    from support.elfbuild import build_lib

    src = tmp_path / "prog.c"
    compiled = "/usr/share/X11/locale"
    src.write_text(
        DATA_PROGRAM.replace("VAR", "XLOCALEDIR")
        .replace("NAME", "/locale.dir")
        .replace("COMPILED", compiled)
        .replace("TAIL", "/locale.dir")
    )
    assert CC is not None
    binary = tmp_path / "prog"
    subprocess.run([CC, "-O0", "-o", str(binary), str(src)], check=True, capture_output=True)
    other = build_lib(tmp_path / "libother.so.1", "other", compiled, soname="libother.so.1")
    xkb = build_lib(tmp_path / "libxkb.so.0", "xkb", compiled, soname="libxkbcommon.so.0")
    debs = [
        Deb("libx11-6", architecture=ARCH,
            fields={"Depends": "libx11-data, libother1, libxkbcommon0"},
            files={"usr/bin/x11-demo": binary.read_bytes()}),
        Deb("libxkbcommon0", architecture=ARCH,
            files={f"usr/lib/{TRIPLET}/libxkbcommon.so.0": xkb.read_bytes()}),
        Deb("libx11-data", architecture="all",
            files={"usr/share/X11/locale/locale.dir": b"WHERE's locale.dir\n"}),
        Deb("libother1", architecture=ARCH,
            files={f"usr/lib/{TRIPLET}/libother.so.1": other.read_bytes()}),
    ]  # fmt: skip
    run_cpk("store", "add", *[d.build(tmp_path / f"{d.name}.deb") for d in debs], check=True)
    report = run_cpk("install", "libx11-6", tmp_path / "where", check=True).stderr
    lines = [ln for ln in report.splitlines() if f"read {compiled} \u2014" in ln]
    assert len(lines) == 2, report
    redirected = [ln for ln in lines if "redirected to WHERE/share/X11/locale by XLOCALEDIR" in ln]
    assert len(redirected) == 1 and "libother" not in redirected[0], lines
    assert "lib/libxkbcommon.so.0" in redirected[0]
    rest = next(ln for ln in lines if ln not in redirected)
    assert "lib/libother.so.1" in rest and "x11-demo" not in rest and "libxkbcommon" not in rest
    assert rest.endswith(("use the union mode for an unmodified run", "absent on this system"))
