"""Project inputs: pyproject.toml, requirements files, PEP 723 scripts, fingerprints."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from contentpkg.errors import CpkError
from contentpkg.python.project import (
    IndexSettings,
    ScriptInputs,
    canonical_requirement,
    find_project,
    inputs_fingerprint,
    load_project,
    read_script_metadata,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "Demo_App"
version = "1.2.3"
requires-python = ">=3.11"
dependencies = ["requests>=2", "rich"]

[project.optional-dependencies]
fast = ["orjson; sys_platform == 'linux'"]
all = ["demo-app[fast,yaml]"]
yaml = ["pyyaml>=6"]

[dependency-groups]
test = ["pytest>=8", {include-group = "lint"}]
lint = ["ruff"]
dev = [{include-group = "test"}, "ipython"]
docs = ["sphinx", "demo-app[yaml] ; python_version >= '3.12'"]
"""


# ---------------------------------------------------------------- pyproject


def test_pyproject_dependencies_and_default_dev_group(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    inputs = load_project(tmp_path)
    assert inputs.kind == "pyproject"
    assert inputs.root == tmp_path
    assert (inputs.name, inputs.version, inputs.installable) == ("Demo_App", "1.2.3", True)
    assert inputs.requires_python == ">=3.11"
    # dev includes test which includes lint: every include is expanded, in order.
    assert inputs.requirements == ["requests>=2", "rich", "pytest>=8", "ruff", "ipython"]
    assert inputs.groups == ("dev",)
    assert inputs.extras == ()


def test_pyproject_no_default_groups_and_explicit_group(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    assert load_project(tmp_path, no_default_groups=True).requirements == ["requests>=2", "rich"]
    inputs = load_project(tmp_path, groups=["Lint"], no_default_groups=True)
    assert inputs.groups == ("lint",)
    assert inputs.requirements == ["requests>=2", "rich", "ruff"]


def test_pyproject_extras_expand_self_references_with_markers(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    inputs = load_project(tmp_path, extras=["all"], groups=["docs"], no_default_groups=True)
    assert inputs.extras == ("all",)
    assert inputs.requirements == [
        "requests>=2",
        "rich",
        "orjson; sys_platform == 'linux'",
        "pyyaml>=6",
        "sphinx",
        "pyyaml>=6 ; python_version >= '3.12'",
    ]
    every = load_project(tmp_path, all_extras=True, all_groups=True)
    assert set(every.extras) == {"all", "fast", "yaml"}
    assert set(every.groups) == {"dev", "docs", "lint", "test"}


def test_unknown_extra_and_group_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    with pytest.raises(CpkError, match=r"no extra named 'nope' .*all, fast, yaml"):
        load_project(tmp_path, extras=["nope"])
    with pytest.raises(CpkError, match=r"no dependency group named 'nope'"):
        load_project(tmp_path, groups=["nope"])


def test_dependency_group_cycle_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        """
        [dependency-groups]
        dev = [{include-group = "a"}]
        a = ["x", {include-group = "B"}]
        b = [{include-group = "a"}]
        """,
    )
    with pytest.raises(CpkError) as caught:
        load_project(tmp_path)
    message = str(caught.value)
    assert "pyproject.toml" in message
    assert "dependency group cycle: a -> b -> a" in message
    assert "\n" not in message


def test_dependency_group_bad_entries(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[dependency-groups]\ndev = [{include-group = "zz"}]\n')
    with pytest.raises(CpkError, match="includes unknown dependency group 'zz'"):
        load_project(tmp_path)
    write(tmp_path / "pyproject.toml", '[dependency-groups]\ndev = [{include = "x"}]\n')
    with pytest.raises(CpkError, match="expected a requirement string"):
        load_project(tmp_path)


def test_groups_only_project_is_not_installable(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[dependency-groups]\ndev = ["pytest"]\n')
    inputs = load_project(tmp_path / "pyproject.toml")
    assert inputs.name is None
    assert not inputs.installable
    assert inputs.requirements == ["pytest"]
    with pytest.raises(CpkError, match="no \\[project\\] table, so no extras"):
        load_project(tmp_path, extras=["x"])


def test_invalid_requirement_names_file_and_requirement(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\ndependencies = ["foo>>1"]\n')
    with pytest.raises(CpkError) as caught:
        load_project(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "pyproject.toml"))
    assert "invalid requirement 'foo>>1'" in message
    assert "\n" not in message
    # The hot path may skip validation: the lock, made with validation, has it.
    assert load_project(tmp_path, validate=False).requirements == ["foo>>1"]


def test_pyproject_errors(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[project\n")
    with pytest.raises(CpkError, match="invalid TOML"):
        load_project(tmp_path)
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\ndynamic = ["dependencies"]\n')
    with pytest.raises(CpkError, match="dependencies is dynamic"):
        load_project(tmp_path)
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\nrequires-python = "3.11"\n')
    with pytest.raises(CpkError, match=r"'3\.11' is not a version specifier"):
        load_project(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CpkError, match=r"no pyproject\.toml or requirements\.txt"):
        load_project(tmp_path / "empty")
    with pytest.raises(CpkError, match="nowhere: no such project file"):
        load_project(tmp_path / "nowhere")


def test_tool_cpk_settings_and_sources(tmp_path: Path) -> None:
    project = tmp_path / "A"
    write(tmp_path / "B" / "pyproject.toml", '[project]\nname = "b"\nversion = "1"\n')
    (project / "wheels").mkdir(parents=True)
    write(
        project / "pyproject.toml",
        """
        [project]
        name = "a"
        dependencies = ["b"]

        [tool.cpk]
        index-url = "https://example.org/simple/"
        extra-index-url = "https://extra.example.org/simple"
        find-links = ["wheels", "https://example.org/links/"]

        [tool.cpk.sources]
        B = { path = "../B", editable = true }
        """,
    )
    inputs = load_project(project)
    assert inputs.index == IndexSettings(
        index_url="https://example.org/simple/",
        extra_index_urls=("https://extra.example.org/simple",),
        find_links=(str(project / "wheels"), "https://example.org/links/"),
    )
    assert set(inputs.sources) == {"b"}
    assert inputs.sources["b"].path == tmp_path / "B"
    assert inputs.sources["b"].editable
    assert inputs.tool["index-url"] == "https://example.org/simple/"


def test_tool_cpk_errors(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "a"\n[tool.cpk]\nindex_url = "x"\n')
    with pytest.raises(CpkError, match=r"unknown key \[tool.cpk\].index_url"):
        load_project(tmp_path)
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "a"\n[tool.cpk.sources]\nb = { path = "../nope", editable = true }\n',
    )
    with pytest.raises(CpkError, match="not a directory"):
        load_project(tmp_path)
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "a"\n[tool.cpk.sources]\nb = { git = "https://x" }\n',
    )
    with pytest.raises(CpkError, match="unsupported key 'git'"):
        load_project(tmp_path)


def test_default_groups_setting(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        """
        [tool.cpk]
        default-groups = ["docs"]
        [dependency-groups]
        dev = ["pytest"]
        docs = ["sphinx"]
        """,
    )
    assert load_project(tmp_path).requirements == ["sphinx"]


def test_tool_only_pyproject_defers_to_requirements_txt(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.cpk]\nindex-url = "https://i.example/simple"\n')
    write(tmp_path / "requirements.txt", "attrs\n")
    inputs = load_project(tmp_path)
    assert inputs.kind == "requirements"
    assert inputs.requirements == ["attrs"]
    assert inputs.index.index_url == "https://i.example/simple"
    assert inputs.files == (tmp_path / "pyproject.toml", tmp_path / "requirements.txt")


# ---------------------------------------------------------- finding


def test_find_project_prefers_pyproject_over_nearer_requirements(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\n')
    docs = tmp_path / "docs" / "api"
    docs.mkdir(parents=True)
    write(tmp_path / "docs" / "requirements.txt", "sphinx\n")
    assert find_project(docs) == tmp_path
    assert find_project(tmp_path) == tmp_path


def test_find_project_requirements_only(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "requirements.txt", "attrs\n")
    sub = tmp_path / "proj" / "src" / "pkg"
    sub.mkdir(parents=True)
    assert find_project(sub) == tmp_path / "proj"
    assert find_project(sub / "module.py") == tmp_path / "proj"


# ---------------------------------------------------------- requirements.txt


def test_requirements_file_includes_options_continuations(tmp_path: Path) -> None:
    write(tmp_path / "B" / "pyproject.toml", '[project]\nname = "Bee"\n')
    (tmp_path / "proj" / "links").mkdir(parents=True)
    write(
        tmp_path / "proj" / "requirements.txt",
        """
        # the app
        --index-url https://idx.example/simple
        --extra-index-url=https://extra.example/simple
        -f links

        requests >= 2 , < 3 ; python_version >= "3.8"  # trailing comment
        rich==13.7.0 \\
            --hash=sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000 \\
            --hash sha256:0123450000000000000000000000000000000000000000000000000000000000
        -r sub/more.txt
        -e ../B[cli]
        """,
    )
    write(
        tmp_path / "proj" / "sub" / "more.txt",
        """
        attrs\\
        >=23
        --find-links ../links
        """,
    )
    inputs = load_project(tmp_path / "proj")
    assert inputs.kind == "requirements"
    assert inputs.requirements == [
        'requests >= 2 , < 3 ; python_version >= "3.8"',
        "rich==13.7.0",
        "attrs>=23",
        "Bee[cli]",
    ]
    assert inputs.index.index_url == "https://idx.example/simple"
    assert inputs.index.extra_index_urls == ("https://extra.example/simple",)
    # The same directory named twice, relative to two files, is one entry.
    assert inputs.index.find_links == (str(tmp_path / "proj" / "links"),)
    assert inputs.hashes == {"rich": ("sha256:012345" + "0" * 58, "sha256:abcdef" + "0" * 58)}
    assert inputs.sources["bee"].path == tmp_path / "B"
    assert inputs.sources["bee"].editable
    assert inputs.files == (
        tmp_path / "proj" / "requirements.txt",
        tmp_path / "proj" / "sub" / "more.txt",
    )


def test_requirements_file_unsupported_option_names_file_and_line(tmp_path: Path) -> None:
    req = write(tmp_path / "requirements.txt", "attrs\n\n# comment\n--pre\n")
    with pytest.raises(CpkError) as caught:
        load_project(req)
    assert str(caught.value).startswith(f"{req}:4: unsupported option '--pre'")
    write(req, "attrs\nrich \\\n  --global-option=x\n")
    with pytest.raises(
        CpkError, match=rf"^{re.escape(str(req))}:2: unsupported option '--global-option'"
    ):
        load_project(req)


def test_requirements_file_errors(tmp_path: Path) -> None:
    req = write(tmp_path / "requirements.txt", "attrs\nfoo>>1\n")
    with pytest.raises(CpkError, match=rf"^{re.escape(str(req))}:2: invalid requirement 'foo>>1'"):
        load_project(req)
    write(req, "-r missing.txt\n")
    with pytest.raises(CpkError, match=rf"^{re.escape(str(req))}:1: cannot read .*missing.txt"):
        load_project(req)
    write(req, "-r other.txt\n")
    write(tmp_path / "other.txt", "-r requirements.txt\n")
    with pytest.raises(CpkError, match=r"include each other: requirements\.txt -> other\.txt"):
        load_project(req)
    write(req, "-e https://example.org/x.tar.gz#egg=x\n")
    with pytest.raises(CpkError, match="needs a local directory"):
        load_project(req)
    write(req, "--index-url\n")
    with pytest.raises(
        CpkError, match=rf"^{re.escape(str(req))}:1: option --index-url needs a value"
    ):
        load_project(req)
    (tmp_path / "noname").mkdir()
    write(req, "-e ./noname\n")
    with pytest.raises(CpkError, match=r"cannot tell the project name of \./noname"):
        load_project(req)
    write(req, "-e ./noname#egg=nameless\n")
    assert load_project(req).requirements == ["nameless"]


# ---------------------------------------------------------- PEP 723


def test_script_metadata(tmp_path: Path) -> None:
    script = write(
        tmp_path / "tool.py",
        """
        #!/usr/bin/env python
        # /// script
        # requires-python = ">=3.11"
        # dependencies = [
        #   "requests<3",
        #   "rich",
        # ]
        #
        # [tool.cpk]
        # index-url = "https://idx.example/simple"
        # ///

        import rich
        """,
    )
    inputs = read_script_metadata(script)
    assert isinstance(inputs, ScriptInputs)
    assert inputs.kind == "script"
    assert inputs.script == script
    assert inputs.root == tmp_path
    assert inputs.requirements == ["requests<3", "rich"]
    assert inputs.requires_python == ">=3.11"
    assert inputs.index.index_url == "https://idx.example/simple"


def test_script_without_block_or_with_other_blocks(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.py", "print('hi')\n# /// script\n# dependencies = []\n")
    assert read_script_metadata(plain) is None  # unclosed: not a block, per the spec
    other = write(tmp_path / "other.py", "# /// pyproject\n# x = 1\n# ///\n")
    assert read_script_metadata(other) is None


def test_script_with_two_blocks_is_an_error(tmp_path: Path) -> None:
    block = "# /// script\n# dependencies = ['a']\n# ///\n"
    script = write(tmp_path / "two.py", block + "\n" + block)
    with pytest.raises(CpkError, match="more than one '# /// script'"):
        read_script_metadata(script)


def test_script_bad_metadata(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", "# /// script\n# dependencies = ['a b c']\n# ///\n")
    with pytest.raises(CpkError, match=r"s\.py: invalid requirement 'a b c'"):
        read_script_metadata(script)
    write(script, "# /// script\n# dependencies = [\n# ///\n")
    with pytest.raises(CpkError, match="invalid TOML in the script metadata block"):
        read_script_metadata(script)


# ---------------------------------------------------------- fingerprint


def fingerprint_of(directory: Path, text: str, **kwargs: object) -> str:
    write(directory / "pyproject.toml", text)
    inputs = load_project(directory)
    return inputs_fingerprint(inputs, python_version="3.11.7", **kwargs)  # type: ignore[arg-type]


def test_fingerprint_stable_under_reordering_and_whitespace(tmp_path: Path) -> None:
    a = fingerprint_of(
        tmp_path / "a",
        """
        [project]
        name = "demo"
        dependencies = ["Requests[socks,Security] >= 2 , <3", "rich ; python_version<'3.12'"]
        """,
    )
    b = fingerprint_of(
        tmp_path / "b",
        """
        # a comment changes nothing
        [project]
        dependencies = [
            "rich;python_version < '3.12'",
            "requests[security,socks]<3,>=2",
        ]
        name = "Demo"
        """,
    )
    assert a == b
    assert len(a) == 64


def test_fingerprint_changes_with_real_changes(tmp_path: Path) -> None:
    base = '[project]\nname = "demo"\ndependencies = ["requests>=2"]\n'
    first = fingerprint_of(tmp_path / "a", base)
    assert fingerprint_of(tmp_path / "b", base.replace(">=2", ">=2.1")) != first
    assert fingerprint_of(tmp_path / "c", base + 'requires-python = ">=3.11"\n') != first
    inputs = load_project(tmp_path / "a")
    assert inputs_fingerprint(inputs, python_version="3.12.1") != first
    assert (
        inputs_fingerprint(
            inputs,
            python_version="3.11.7",
            index_settings=(["https://other.example/simple/"], []),
        )
        != first
    )
    assert (
        inputs_fingerprint(inputs, python_version="3.11.7", markers={"sys_platform": "darwin"})
        != first
    )
    # The default index spelt out is the default index, with or without "/".
    for spelt in ("https://pypi.org/simple/", "https://pypi.org/simple"):
        assert (
            inputs_fingerprint(inputs, python_version="3.11.7", index_settings=([spelt], []))
            == first
        )


def test_fingerprint_tracks_selection_and_local_sources(tmp_path: Path) -> None:
    write(tmp_path / "B" / "pyproject.toml", '[project]\nname = "b"\ndependencies = []\n')
    write(
        tmp_path / "A" / "pyproject.toml",
        """
        [project]
        name = "a"
        dependencies = ["b"]
        [dependency-groups]
        dev = ["pytest"]
        [tool.cpk.sources]
        b = { path = "../B", editable = true }
        """,
    )
    inputs = load_project(tmp_path / "A")
    first = inputs_fingerprint(inputs, python_version="3.11.7")
    without_dev = load_project(tmp_path / "A", no_default_groups=True)
    assert inputs_fingerprint(without_dev, python_version="3.11.7") != first
    # B's own requirements are inputs of A's lock.
    write(tmp_path / "B" / "pyproject.toml", '[project]\nname = "b"\ndependencies = ["x"]\n')
    assert inputs_fingerprint(load_project(tmp_path / "A"), python_version="3.11.7") != first


def test_fingerprint_is_the_same_in_another_checkout(tmp_path: Path) -> None:
    text = '[project]\nname = "a"\n[tool.cpk]\nfind-links = ["wheels"]\n'
    prints = []
    for where in ("one", "two/deeper"):
        (tmp_path / where / "wheels").mkdir(parents=True)
        prints.append(fingerprint_of(tmp_path / where, text))
    assert prints[0] == prints[1]


def test_canonical_requirement() -> None:
    assert canonical_requirement("Foo.Bar [B, a] (>=1, <2)") == "foo-bar[a,b]<2,>=1"
    assert canonical_requirement("x @ https://h/x.whl ; os_name == 'nt'") == (
        "x@https://h/x.whl;os_name=='nt'"
    )
    assert canonical_requirement("x; extra == 'a b'") == "x;extra=='a b'"


def test_fingerprint_index_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fingerprint takes its places from ``index_settings``: given its
    answer, or (None) asking it with the project's own table, as ``cpk run``
    does. The project's raw table merges a requirements file's options."""
    from contentpkg.python.project.settings import index_settings

    monkeypatch.delenv("CPK_FIND_LINKS", raising=False)
    (tmp_path / "links").mkdir()
    write(tmp_path / "requirements.txt", "-i https://idx.example/simple\n-f links\nattrs\n")
    write(tmp_path / "pyproject.toml", '[tool.cpk]\nextra-index-url = "https://x.example/s/"\n')
    inputs = load_project(tmp_path)
    assert inputs.index_table == {
        "index-url": "https://idx.example/simple",
        "extra-index-url": ["https://x.example/s/"],
        "find-links": [str(tmp_path / "links")],
    }
    pair = index_settings(None, None, inputs.index_table, project_dir=inputs.root)
    assert pair == (
        ["https://x.example/s/", "https://idx.example/simple/"],
        [(tmp_path / "links").as_uri()],
    )
    ours = inputs_fingerprint(inputs, python_version="3.11.7")
    assert inputs_fingerprint(inputs, python_version="3.11.7", index_settings=pair) == ours
    swapped = (list(reversed(pair[0])), pair[1])
    assert inputs_fingerprint(inputs, python_version="3.11.7", index_settings=swapped) != ours
    # The environment overrides the project for the fingerprint as for the client.
    monkeypatch.setenv("CPK_INDEX_URL", "https://env.example/simple/")
    assert inputs_fingerprint(inputs, python_version="3.11.7") != ours


@pytest.mark.parametrize(
    "name", ["Demo_App", "demo-app", "a.b_c", "A__B--c", "plain", "x.-_y", "Zope.Interface"]
)
def test_one_name_normaliser_agrees_with_packaging(name: str) -> None:
    """The stdlib normaliser the light readers use spells names as packaging does."""
    from packaging.utils import canonicalize_name

    from contentpkg.python.names import canonical_name, dist_info_name

    assert canonical_name(name) == canonicalize_name(name)
    assert dist_info_name(name) == canonicalize_name(name).replace("-", "_")


def test_one_pep621_reader_names_a_dynamic_version(tmp_path: Path) -> None:
    """Project inputs, the resolver and the overlay read [project] through one
    reader, so a dynamic version has one name everywhere."""
    from contentpkg.python.project import DYNAMIC_VERSION, read_static_project

    file = write(
        tmp_path / "pyproject.toml",
        """
        [project]
        name = "Dyn"
        dynamic = ["version"]
        dependencies = ["a"]
        [project.optional-dependencies]
        Test_Extra = ["b"]
        [project.scripts]
        dyn = "dyn:main"
        """,
    )
    _, project = read_static_project(file)
    assert project is not None
    assert (project.name, project.version_known, project.shown_version) == (
        "Dyn",
        False,
        DYNAMIC_VERSION,
    )
    assert DYNAMIC_VERSION == "0+dynamic"
    assert project.optional_dependencies == {"test-extra": ["b"]}
    assert project.extra_names == {"test-extra": "Test_Extra"}
    assert project.scripts == {"dyn": "dyn:main"}
    write(file, '[project]\nname = "p"\nversion = 1\n')
    with pytest.raises(CpkError, match=r"\[project\]\.version must be a string"):
        read_static_project(file)
