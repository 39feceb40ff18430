"""The README's `serve` synopsis and settings table say what the code does:
every flag of the parser and no other, every setting named exists (a
section for ``name.*``), and each default shown is the settings object's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from tidings.cli import parser
from tidings.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def serve_flags() -> set[str]:
    commands = next(a for a in parser()._actions if a.dest == "command")
    serve = commands.choices["serve"]  # type: ignore[index]
    return {opt for action in serve._actions for opt in action.option_strings
            if opt.startswith("--") and opt != "--help"}


def settings_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the settings table."""
    text = README.read_text()
    table = text.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[1:]:  # after the --- row
        names_cell, defaults_cell = line.split("|")[1:3]
        rows.append((re.findall(r"`([^`]+)`", names_cell),
                     re.findall(r"`([^`]+)`", defaults_cell)))
    return rows


def _resolve(path: list[str]) -> Any:
    node: Any = Settings()
    for part in path:
        names = {f.encode_name: f.name for f in msgspec.structs.fields(type(node))}
        assert part in names, ".".join(path)
        node = getattr(node, names[part])
    return node


def test_the_serve_synopsis_names_every_flag() -> None:
    synopsis = re.search(r"^`tidings serve (.*)`$", README.read_text(), flags=re.M)
    assert synopsis, "the README has no `tidings serve ...` synopsis"
    assert set(re.findall(r"--[a-z-]+", synopsis.group(1))) == serve_flags()


def test_the_settings_table_names_real_settings_with_their_defaults() -> None:
    rows = settings_rows()
    assert len(rows) >= 8
    named = set()
    for names, defaults in rows:
        leaves = [n for n in names if not n.endswith(".*")]
        for name in names:
            if name.endswith(".*"):
                assert isinstance(_resolve(name[:-2].split(".")), msgspec.Struct), name
        if defaults and leaves:
            assert len(defaults) == len(leaves), names
            for name, default in zip(leaves, defaults, strict=True):
                value = _resolve(name.split("."))
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert float(default) == value, name
                else:
                    assert str(value) == default, name
        named.update(leaves)
    # Every plain top-level setting (not a section, not a pipeline list) is there.
    scalars = {f.encode_name for f in msgspec.structs.fields(Settings)
               if f.type in (str, int, float, bool) or isinstance(f.default, (str, int, float))}
    assert scalars <= named, scalars - named
