"""The Redis scripts take of the shared Lua libraries only what they use.

Every script runs against a real Redis in the conformance suite; these
checks read the sources, so that a library function left out of a script
that a test happens not to reach is still caught."""

from __future__ import annotations

import re

from tidings.storage.redis import scripts
from tidings.storage.redis.lua.library import LIB, NOTIFY_LIB

ALL_SCRIPTS = [value for value in vars(scripts).values() if isinstance(value, scripts.Script)]
LIBRARY_NAMES = {name for library in (LIB, NOTIFY_LIB)
                 for names, _ in scripts._units(library) for name in names}


def defined(source: str) -> set[str]:
    return {name for names, _ in scripts._units(source) for name in names} | set(
        re.findall(r"^\s*local function (\w+)", source, re.M))


def test_every_script_defines_the_library_names_it_uses() -> None:
    assert len(ALL_SCRIPTS) > 30
    for script in ALL_SCRIPTS:
        used = {name for name in LIBRARY_NAMES if re.search(rf"\b{name}\b", script.source)}
        assert used <= defined(script.source), script.name


def test_a_script_leaves_out_what_it_does_not_use() -> None:
    # A single delete needs remove_all, and through it remove; no walk.
    source = scripts.delete.source
    assert "local function remove_all" in source
    assert "local function remove(" in source
    assert "local function walk" not in source
    assert "local function new_delivery" not in source
    # No library at all for a script that uses none of it.
    assert "local function" not in scripts.create_queue.source
