"""The marker algebra behind the universal lock: DNF, extra substitution,
negation, simplification over the sampled environments, propagation."""

from __future__ import annotations

import pytest
from packaging.markers import Marker
from packaging.version import Version

from contentpkg.python.resolve.markers import (
    TRUE,
    Universe,
    UnsupportedMarker,
    negate,
    propagate,
    render,
    to_dnf,
)


def test_extra_is_substituted_and_the_rest_kept() -> None:
    text = 'python_version < "3.10" and (sys_platform == "win32" or extra == "x")'
    assert render(to_dnf(text, extra="x")) == 'python_version < "3.10"'
    assert render(to_dnf(text, extra="")) == 'python_version < "3.10" and sys_platform == "win32"'
    assert to_dnf('extra == "y"', extra="x") == frozenset()


def test_negation_is_the_complement_on_every_sampled_environment() -> None:
    universe = Universe(">=3.8", Version("3.11"))
    marker = to_dnf('(python_version < "3.10" and sys_platform != "win32") or os_name == "nt"')
    inverse = negate(marker)
    assert universe.where(marker) | universe.where(inverse) == universe.all
    assert not universe.where(marker) & universe.where(inverse)
    with pytest.raises(UnsupportedMarker):
        negate(to_dnf('python_version ~= "3.10"'))


def test_simplify_drops_what_the_range_decides() -> None:
    universe = Universe(">=3.11", Version("3.11"))
    # Always true for >=3.11: dropped; impossible: the conjunction goes.
    assert universe.simplify(to_dnf('python_version >= "3.8" and sys_platform == "linux"')) == (
        to_dnf('sys_platform == "linux"')
    )
    assert universe.simplify(to_dnf('python_version < "3.10"')) == frozenset()
    # Python splits that cover the range merge; unsampled variables stay.
    both = to_dnf('python_version < "3.12"') | to_dnf('python_version >= "3.12"')
    assert universe.simplify(both) == TRUE
    machine = to_dnf('platform_machine == "armv7l"')
    assert universe.simplify(machine) == machine
    # The samples are CPython: a PyPy-only dependency is kept for PyPy.
    pypy = to_dnf('implementation_name == "pypy"')
    assert universe.possible(pypy) and universe.simplify(pypy) == pypy


def test_propagation_through_a_cycle_and_two_paths() -> None:
    universe = Universe(">=3.9", Version("3.11"))
    dev = to_dnf('"dev" in dependency_groups')
    win = to_dnf('sys_platform == "win32"')
    edges = {"a": [("b", win)], "b": [("a", TRUE), ("c", TRUE)], "root": [("c", TRUE)]}
    found = propagate([("a", dev), ("root", TRUE)], edges, universe)
    assert render(found["b"]) == '"dev" in dependency_groups and sys_platform == "win32"'
    assert render(found["a"]) == '"dev" in dependency_groups'
    assert found["c"] == TRUE  # the unconditional path absorbs the other
    for value in found.values():
        text = render(value)
        if text:
            Marker(text)
