"""The configuration reference (docs/configuration.md), made from the settings.

Every setting of ``tidings.config.Settings`` is listed with its TOML key,
its ``TIDINGS_*`` variable, its type, its default and its description. The
description is the comment block written directly above the field in
config.py; fields that follow one another with no blank line or comment of
their own share it. A section's text is its class docstring.

    python -m tidings.config_reference > docs/configuration.md
    python -m tidings.config_reference --check docs/configuration.md
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tidings import config

REGENERATE = "python -m tidings.config_reference > docs/configuration.md"

HEADER = f"""\
# Configuration reference

<!-- Generated from src/tidings/config.py by `{REGENERATE}`.
     Do not edit: change the comments in config.py and regenerate. -->

Settings come from, lowest precedence first: their defaults, a TOML file
(`tidings serve --config FILE`, or the `{config.CONFIG_ENV}` variable),
`{config.ENV_PREFIX}*` environment variables, then the command-line flags
of `tidings serve` (`--host`, `--port`, `--workers`, `--storage`,
`--ws-port`, `--log-level`). A setting in a section is a key of that TOML table, and
its variable joins the path with double underscores:
`[limits] max_message_ttl` is `{config.ENV_PREFIX}LIMITS__MAX_MESSAGE_TTL`.
Values from the environment are converted to the setting's type (`8888`
becomes a number, `true` a boolean); a setting of type `list[str] | str`
takes a list or one comma-separated string. An unknown key or
`{config.ENV_PREFIX}*` variable, or a value out of range, stops the
server with one line naming the file, variable or flag to fix (and, for an
unknown key, the nearest known one).

Most deployments need only a few of these: see
[deployment.md](deployment.md) and [storage.md](storage.md).
"""


@dataclass(frozen=True)
class Setting:
    """One leaf setting, ready to print."""

    path: tuple[str, ...]
    type: str
    default: str
    description: str

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return config.ENV_PREFIX + "__".join(self.path).upper()


@dataclass(frozen=True)
class Section:
    """The settings of one struct: its TOML table (empty: the top level)."""

    path: tuple[str, ...]
    doc: str
    settings: list[Setting]


def _comment_text(lines: list[str]) -> str:
    words = [line.strip().removeprefix("#").strip() for line in lines]
    return " ".join(w for w in words if w)


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment that documents it (see the module docstring)."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    klass = ast.parse(source).body[0]
    assert isinstance(klass, ast.ClassDef)
    comments: dict[str, str] = {}
    previous: tuple[str, int] | None = None  # (field, last line) of the field before
    for node in klass.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            previous = None
            continue
        name = node.target.id
        block: list[str] = []
        row = node.lineno - 2  # 0-based index of the line above the field
        while row >= 0 and lines[row].strip().startswith("#"):
            block.insert(0, lines[row])
            row -= 1
        # "# --- Part of a section ---" rules head a group of fields; they
        # describe none of them.
        block = [line for line in block if not line.strip().startswith("# ---")]
        if block:
            comments[name] = _comment_text(block)
        elif previous is not None and previous[1] == node.lineno - 1:
            comments[name] = comments.get(previous[0], "")
        end = node.end_lineno or node.lineno  # typed optional, always set by ast.parse
        trailing = lines[end - 1].split("  # ", 1)
        if len(trailing) == 2 and name not in comments:
            comments[name] = trailing[1].strip()
        previous = (name, end)
    return comments


def field_annotations(cls: type) -> dict[str, str]:
    """Field name -> its annotation as written in the source."""
    source = inspect.getsource(cls)
    klass = ast.parse(source).body[0]
    assert isinstance(klass, ast.ClassDef)
    return {
        node.target.id: ast.get_source_segment(source, node.annotation) or ""
        for node in klass.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _default(info: msgspec.structs.FieldInfo) -> Any:
    if info.default is not msgspec.NODEFAULT:
        return info.default
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return msgspec.NODEFAULT


def toml_value(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if value is None:
        return "unset"
    if value is msgspec.NODEFAULT:
        return "required"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return msgspec.json.encode(value).decode()


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _docstring(cls: type) -> str:
    doc = cls.__doc__ or ""
    # msgspec gives undocumented Structs a generated signature-like docstring.
    if not doc or doc.startswith(cls.__name__ + "("):
        return ""
    return " ".join(inspect.cleandoc(doc).split())


def sections(cls: type = config.Settings, path: tuple[str, ...] = ()) -> list[Section]:
    """The section of ``cls`` and, after it, those of its nested structs in
    the order they are declared."""
    comments = field_comments(cls)
    annotations = field_annotations(cls)
    leaves: list[Setting] = []
    nested: list[Section] = []
    for info in msgspec.structs.fields(cls):
        key = info.encode_name
        if _is_struct(info.type):
            nested += sections(info.type, path + (key,))
            continue
        leaves.append(Setting(
            path=path + (key,),
            type=annotations.get(info.name, ""),
            default=toml_value(_default(info)),
            description=comments.get(info.name, ""),
        ))
    return [Section(path=path, doc=_docstring(cls), settings=leaves), *nested]


def undocumented() -> list[str]:
    """The keys of settings without a description."""
    return [s.key for section in sections() for s in section.settings if not s.description]


def _section_markdown(section: Section) -> str:
    title = f"`[{'.'.join(section.path)}]`" if section.path else "Top level"
    out = [f"## {title}", ""]
    if section.doc:
        out += [section.doc, ""]
    for s in section.settings:
        out.append(f"- **`{s.path[-1]}`**: `{s.type}`, default `{s.default}`, "
                   f"variable `{s.env}`.")
        if s.description:
            out.append(f"  {s.description}")
    out.append("")
    return "\n".join(out)


def reference_markdown() -> str:
    """The whole of docs/configuration.md."""
    parts = [HEADER]
    all_sections = sections()
    parts.append("Sections: " + ", ".join(
        f"`[{'.'.join(s.path)}]`" for s in all_sections if s.path) + ".\n")
    parts += [_section_markdown(section) for section in all_sections]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tidings.config_reference",
        description="Print the configuration reference (docs/configuration.md), or check it.")
    parser.add_argument("--check", metavar="FILE",
                        help="exit 1 if FILE differs from what would be printed")
    args = parser.parse_args(argv)
    text = reference_markdown()
    if args.check:
        path = Path(args.check)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
