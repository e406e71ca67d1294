"""A project's inputs: what it declares, where it is, and what that hashes to.

The public face of the project readers (``pyproject.toml``, requirements
files, PEP 723 script headers, index settings); callers import from here,
so the readers behind it can be rearranged freely.
"""

from contentpkg.python.project.inputs import (
    ProjectInputs,
    ScriptInputs,
    Source,
    add_url_sources,
    canonical_name,
    find_project,
    inputs_fingerprint,
    load_project,
    read_script_metadata,
    requirement_name,
)

__all__ = [
    "ProjectInputs",
    "ScriptInputs",
    "Source",
    "add_url_sources",
    "canonical_name",
    "find_project",
    "inputs_fingerprint",
    "load_project",
    "read_script_metadata",
    "requirement_name",
]
