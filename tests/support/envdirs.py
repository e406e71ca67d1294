"""Env dirs made by hand, as ``cpk install`` will make them, for the env tests.

A program is a shell script ``bin/<name>-<version>`` (a real file) with
``bin/<name>`` linking to it; it prints ``<name> <version> <payload>`` where
the payload is read from ``share/<name>/payload`` beside its *real* path, so
a run that met half of one generation and half of another, or a missing
file, cannot print a well-formed answer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from contentpkg.env.profiles import Profile, link_tree
from support import context

MANIFEST = ".cpk/manifest.json"

SCRIPT = """#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
payload=$(cat "$here/../share/{name}/payload") || exit 3
echo "{name} {version} $payload"
exit "${{{exit_var}:-0}}"
"""


#: The same program as an ELF executable: it finds its payload from
#: /proc/self/exe, fixed by the kernel at exec time as $ORIGIN is, where a
#: script can only re-resolve "$0" through the alias later (and so may read
#: the next generation's file). Its name and version come from its file name.
ELF_SOURCE = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char exe[4096], path[8300], payload[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) return 2;
    exe[n] = 0;
    char *base = strrchr(exe, '/');
    *base++ = 0;
    char *dash = strrchr(base, '-');
    if (!dash) return 4;
    *dash = 0;
    snprintf(path, sizeof path, "%s/../share/%s/payload", exe, base);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(payload, sizeof payload, f)) return 3;
    printf("%s %s %s", base, dash + 1, payload);
    return 0;
}
"""


def build_elf_program(out: Path) -> Path:
    """Compile ELF_SOURCE to out (skips the test without a C compiler)."""
    from support.elfbuild import _cc

    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.with_suffix(".c")
    source.write_text(ELF_SOURCE)
    _cc(["-O1", "-o", str(out), str(source)])
    return out


def exit_var(name: str) -> str:
    """The variable a program's exit status is read from (for exec tests)."""
    return f"{name.upper().replace('-', '_')}_EXIT"


def _replace(path: Path, data: str, mode: int = 0o644) -> None:
    """Write by rename: the old name may be a hard link into an older generation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_manifest(env: Path) -> dict[str, Any]:
    try:
        return json.loads((env / MANIFEST).read_text())
    except FileNotFoundError:
        return {"format": 1, "kind": "envdir", "installed": [], "entries": {}, "files": {}}


def add_program(
    env: Path,
    name: str,
    version: str,
    man: bool = True,
    requires: list[dict[str, str]] | None = None,
    entry: str | None = None,
    executable: Path | None = None,
) -> None:
    """Put program name at version into env (replacing another version of it).

    The program is the shell script above, or a copy of ``executable``.
    """
    manifest = read_manifest(env)
    entry = entry or f"{name},{version},{'a' * 32}"
    for old in [i for i in manifest["installed"] if i["name"] == name]:
        manifest["installed"].remove(old)
        manifest["entries"].pop(old["entry"], None)
        for rel in [r for r, f in manifest["files"].items() if f["entry"] == old["entry"]]:
            del manifest["files"][rel]
            if os.path.lexists(env / rel):
                os.unlink(env / rel)
    real = env / "bin" / f"{name}-{version}"
    if executable is not None:
        real.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(executable, real.with_name(f".{real.name}.tmp"))
        os.chmod(real.with_name(f".{real.name}.tmp"), 0o755)
        os.replace(real.with_name(f".{real.name}.tmp"), real)
    else:
        script = SCRIPT.format(name=name, version=version, exit_var=exit_var(name))
        _replace(real, script, 0o755)
    link = env / "bin" / name
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(f"{name}-{version}", link)
    _replace(env / "share" / name / "payload", f"payload-{version}\n")
    provides: dict[str, list[str]] = {"PATH": [f"bin/{name}"], "XDG_DATA_DIRS": [f"share/{name}"]}
    files = {
        f"bin/{name}-{version}": f"bin/{name}",
        f"share/{name}/payload": f"share/{name}/payload",
    }
    if man:
        page = f"share/man/man1/{name}.1"
        _replace(
            env / page, f'.TH {name.upper()} 1\n.SH NAME\n{name} \\- test program "{version}"\n'
        )
        provides["MANPATH"] = [page]
        files[page] = page
    manifest["installed"].append(
        {
            "request": name,
            "entry": entry,
            "name": name,
            "version": version,
            "executables": [f"bin/{name}"],
        }
    )
    manifest["entries"][entry] = {
        "name": name,
        "version": version,
        "content_hash": "0" * 64,
        "provides": provides,
        "requires": requires or [],
    }
    for rel, inside in files.items():
        manifest["files"][rel] = {"entry": entry, "path": inside, "sha256": "0" * 64}
    _replace(env / MANIFEST, json.dumps(manifest, indent=1))
    refs = sorted(manifest["entries"])
    _replace(env / ".cpk" / "refs", "".join(f"{r}\n" for r in refs))


def install(profile: str, name: str, version: str, home: Path | None = None, **kwargs: Any) -> Path:
    """What ``cpk install`` into a profile does, by hand: a new generation from the last."""
    home = home or context.home()
    with Profile(profile, home).begin(f"install {name}", f"cpk install {name}") as tx:
        if tx.previous is not None:
            link_tree(tx.previous, tx.path)
        add_program(tx.path, name, version, **kwargs)
    return tx.path
