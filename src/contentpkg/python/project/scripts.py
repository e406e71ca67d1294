"""PEP 723 inline script metadata: a script's ``# /// script`` block.

Standard library only, for ``cpk run``'s path.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from contentpkg.errors import CpkError, InvalidInputError
from contentpkg.python.project.cpk_table import read_tool_table
from contentpkg.python.project.models import ScriptInputs
from contentpkg.python.project.pep508 import validate_requirements, validate_specifier
from contentpkg.python.project.sources import add_url_sources
from contentpkg.python.project.tomlfile import strings, table

# PEP 723's reference regex, verbatim: the spec defines the block by it.
_SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


def read_script_metadata(script: Path, *, validate: bool = True) -> ScriptInputs | None:
    """The inputs of a script's ``# /// script`` block, None when it has none."""
    script = Path(script).absolute()
    try:
        text = script.read_text(encoding="utf-8")
    except OSError as error:
        raise CpkError(f"{script}: cannot read script: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CpkError(f"{script}: not UTF-8 text") from None
    blocks = [m for m in _SCRIPT_BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise CpkError(f"{script}: more than one '# /// script' metadata block")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(
            f"{script}: invalid TOML in the script metadata block: {error}", path=str(script)
        ) from None
    requirements = strings(data.get("dependencies"), script, "script metadata 'dependencies'")
    requires_python = data.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise CpkError(f"{script}: script metadata 'requires-python' must be a string")
    tool = table(
        table(data.get("tool"), script, "script metadata [tool]").get("cpk"),
        script,
        "script metadata [tool.cpk]",
    )
    root = script.parent
    index, sources, default_groups = read_tool_table(tool, script, root, validate)
    if default_groups is not None:
        raise CpkError(f"{script}: a script has no dependency groups (default-groups)")
    requirements = [r.strip() for r in requirements]
    if validate:
        validate_requirements(requirements, script)
        if requires_python is not None:
            validate_specifier(requires_python, script, "script metadata 'requires-python'")
    add_url_sources(requirements, root, str(script), sources)
    return ScriptInputs(
        root=root,
        input_file=script,
        kind="script",
        requirements=list(dict.fromkeys(requirements)),
        requires_python=requires_python,
        index=index,
        sources=sources,
        tool=tool,
        files=(script,),
    )
