"""A project's inputs: what it declares, where it is, and what that hashes to.

The public face of the project readers, one module per format:
:mod:`.pyproject` (PEP 621 through :mod:`.pep621`, PEP 735, ``[tool.cpk]``
through :mod:`.cpk_table`), :mod:`.requirements` (pip-style files),
:mod:`.scripts` (PEP 723 headers), with :mod:`.discovery` (finding and
loading a project), :mod:`.fingerprint` (what decides a lock's freshness)
and :mod:`.settings` (which indexes apply). Callers import from here, so the
readers behind it can be rearranged freely. Everything here is standard
library only: ``cpk run`` loads it before deciding whether to do any work.
"""

from contentpkg.python.names import canonical_name
from contentpkg.python.project.discovery import find_project, load_project
from contentpkg.python.project.fingerprint import canonical_requirement, inputs_fingerprint
from contentpkg.python.project.models import IndexSettings, ProjectInputs, ScriptInputs, Source
from contentpkg.python.project.pep508 import requirement_name
from contentpkg.python.project.pep621 import (
    DYNAMIC_VERSION,
    StaticProject,
    read_static_project,
    static_project,
)
from contentpkg.python.project.pyproject import PYPROJECT
from contentpkg.python.project.requirements import REQUIREMENTS_TXT
from contentpkg.python.project.scripts import read_script_metadata
from contentpkg.python.project.sources import add_url_sources

__all__ = [
    "DYNAMIC_VERSION",
    "PYPROJECT",
    "REQUIREMENTS_TXT",
    "IndexSettings",
    "ProjectInputs",
    "ScriptInputs",
    "Source",
    "StaticProject",
    "add_url_sources",
    "canonical_name",
    "canonical_requirement",
    "find_project",
    "inputs_fingerprint",
    "load_project",
    "read_script_metadata",
    "read_static_project",
    "requirement_name",
    "static_project",
]
