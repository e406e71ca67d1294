"""Maintainer scripts: never run, their declarative parts done by composing.

A union has no root and no dpkg database, and a script run in it would
change the host's view only for one process tree anyway, so ``preinst``,
``postinst`` and the others are not run. What they do that matters and is
declarative is done without them: ``update-alternatives --install`` lines
become links in the merged lower (:mod:`.compose`); libraries in the
default directories need no ``ldconfig`` (the loader searches those
directories after its cache), and directories a package adds in
``/etc/ld.so.conf.d`` get a loader cache of the union's own
(:func:`.compose.ldconfig`). Everything else the scripts do is reported,
by script name, when the entry is made.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

#: The scripts dpkg runs around unpacking; none is run here.
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")


def read_script(deb: Path, name: str) -> str | None:
    """A control member's text (``dpkg-deb --info DEB NAME``), None if absent.

    dpkg-deb is the format's own reader and is on every Debian system; the
    control archive holds only small files, so one process per script is
    cheap next to unpacking the data archive.
    """
    tool = shutil.which("dpkg-deb")
    if tool is None:
        return None
    run = subprocess.run([tool, "--info", str(deb), name], capture_output=True, check=False)
    if run.returncode != 0:
        return None
    return run.stdout.decode("utf-8", "replace")


def alternatives(script: str) -> list[dict[str, Any]]:
    """The literal ``update-alternatives --install`` (and ``--slave``) calls of a script.

    Calls built from shell variables cannot be known without running the
    script and are left out (reported with the script).
    """
    text = script.replace("\\\n", " ")
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if "--install" not in words:
            continue
        i = words.index("--install")
        main = words[i + 1 : i + 5]
        if len(main) < 4 or any("$" in w for w in main) or not main[3].lstrip("-").isdigit():
            continue
        link, name, path, priority = main
        found.append({"link": link, "name": name, "path": path, "priority": int(priority)})
        j = i + 5
        while j + 3 < len(words) + 0 and words[j] == "--slave":
            s_link, s_name, s_path = words[j + 1 : j + 4]
            if "$" not in s_link + s_name + s_path:
                found.append(
                    {"link": s_link, "name": s_name, "path": s_path, "priority": int(priority)}
                )
            j += 4
    return found


def scripts_facts(
    deb: Path, package: str, present: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Alternatives declared by the deb's scripts, and notes on what is skipped."""
    alts: list[dict[str, Any]] = []
    for name in present:
        if name == "postinst":
            text = read_script(deb, name)
            if text is not None:
                alts += alternatives(text)
    notes: list[str] = []
    if present:
        done = f" ({len(alts)} update-alternatives links made instead)" if alts else ""
        notes.append(f"{package}: maintainer scripts not run: {', '.join(present)}{done}")
    return alts, notes
