"""Why a configuration is refused, said so an operator can fix it.

A setting can come from four places (a default, the TOML file, a
``TIDINGS_*`` variable, a command-line flag); an error that names only the
setting leaves the operator to guess which one to edit. ``Sources``
remembers where each value came from, and every message here names that
place: ``limits.max_message_ttl = 10 in /etc/tidings.toml``,
``TIDINGS_PORT=99999``, ``--workers 0``. An unknown key gets the nearest
known one ("did you mean ...").

``check`` holds the rules msgspec's types cannot say: ranges, and limits
that must agree with one another (a longest message ttl below the
shortest would refuse every message).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

# Every environment variable of the settings starts so (TIDINGS__LIMITS__...).
ENV_PREFIX = "TIDINGS_"

# The command-line flags that override a setting (tidings.cli.main).
FLAGS = {
    ("host",): "--host",
    ("port",): "--port",
    ("workers",): "--workers",
    ("storage",): "--storage",
    ("log_level",): "--log-level",
    ("websocket", "port"): "--ws-port",
}

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Settings that were renamed: a configuration written for the old name is
# told the new one.
RENAMED = {
    ("logging", "access_format"): ("log_format",),
}


class SettingsError(ValueError):
    """A configuration that cannot run; the message is one line naming the
    setting, where it was set, and what to do."""


@dataclass
class Sources:
    """The layers a configuration was merged from, to say where a value came from."""

    file: str | None = None
    file_data: Mapping[str, Any] = field(default_factory=dict)
    env_keys: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def where(self, path: tuple[str, ...]) -> str:
        """``--port``, ``TIDINGS_PORT``, ``/etc/tidings.toml`` or ``the default``:
        the place that gave ``path`` its value (the highest-precedence one)."""
        if _lookup(self.overrides, path) is not None and path in FLAGS:
            return FLAGS[path]
        if path in self.env_keys:
            return self.env_keys[path]
        if self.file is not None and _lookup(self.file_data, path) is not None:
            return self.file
        return "the default"

    def describe(self, path: tuple[str, ...], value: Any) -> str:
        """The setting as the operator wrote it: ``--workers 0``,
        ``TIDINGS_WORKERS=0`` or ``workers = 0 in FILE``."""
        where = self.where(path)
        if where.startswith("--"):
            return f"{where} {value}"
        if where in self.env_keys.values():
            return f"{where}={value}"
        shown = msgspec.json.encode(value).decode() if not isinstance(value, int) else value
        if where == "the default":
            return f"{dotted(path)} = {shown} (the default)"
        return f"{dotted(path)} = {shown} in {where}"

    def how_to_set(self, path: tuple[str, ...]) -> str:
        """Where the operator changes ``path``: its current source, else
        every way to set it."""
        where = self.where(path)
        if where != "the default":
            return where
        ways = [FLAGS[path]] if path in FLAGS else []
        ways += [env_name(path), f"{dotted(path)} in the config file"]
        return ", ".join(ways[:-1]) + " or " + ways[-1]


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def _lookup(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _struct_at(root: type, path: tuple[str, ...]) -> type | None:
    """The settings class of the section at ``path`` (None past a leaf)."""
    current: Any = root
    for part in path:
        for info in msgspec.structs.fields(current):
            if info.encode_name == part and isinstance(info.type, type) \
                    and issubclass(info.type, msgspec.Struct):
                current = info.type
                break
        else:
            return None
    return current


def _keys_of(section: type) -> list[str]:
    return [info.encode_name for info in msgspec.structs.fields(section)]


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")


def explain_invalid(exc: msgspec.ValidationError, root: type, data: Mapping[str, Any],
                    sources: Sources) -> SettingsError:
    """msgspec's complaint about ``data``, said in the operator's terms."""
    text = str(exc)
    at = _AT.search(text)
    where_path = tuple(p for p in at.group(1).split(".") if p) if at else ()
    unknown = _UNKNOWN.match(_AT.sub("", text))
    problem = _AT.sub("", text).replace("`", "")
    if unknown:
        key = unknown.group(1)
        path = (*where_path, key)
        section = _struct_at(root, where_path)
        known = _keys_of(section) if section is not None else []
        source = sources.where(path)
        from_env = source.startswith("TIDINGS_")
        name = source if from_env else dotted(path)
        place = {"the default": "", name: " (an environment variable)"}.get(
            source, f" in {source}")
        guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if path in RENAMED:
            new = RENAMED[path]
            hint = f"it is now {env_name(new) if from_env else dotted(new)}"
        elif guess:
            near = (*where_path, guess[0])
            hint = f"did you mean {env_name(near) if from_env else dotted(near)}?"
        else:
            hint = "see docs/configuration.md for the known settings"
        return SettingsError(f"unknown setting {name}{place}: {hint}")
    value = _lookup(data, where_path)
    subject = sources.describe(where_path, value) if where_path else "the configuration"
    choices = _choices(root, where_path)
    if choices:
        problem = f"must be one of {', '.join(choices)}"
    return SettingsError(f"invalid setting {subject}: {problem[:1].lower()}{problem[1:]}; "
                         f"fix {sources.how_to_set(where_path)}")


def _choices(root: type, path: tuple[str, ...]) -> list[str]:
    """The values a Literal setting takes (empty for any other kind)."""
    section = _struct_at(root, path[:-1]) if path else None
    if section is None:
        return []
    for info in msgspec.structs.fields(section):
        if info.encode_name == path[-1] and typing.get_origin(info.type) is typing.Literal:
            return [str(choice) for choice in typing.get_args(info.type)]
    return []


def _problems(settings: Any) -> list[tuple[tuple[str, ...], str]]:
    """(setting, what is wrong with it) for each rule ``settings`` breaks."""
    found: list[tuple[tuple[str, ...], str]] = []
    if not 1 <= settings.port <= 65535:
        found.append((("port",), "a port is between 1 and 65535"))
    if not 0 <= settings.websocket.port <= 65535:
        found.append((("websocket", "port"), "a port is between 1 and 65535 (0: none)"))
    if settings.workers < 1:
        found.append((("workers",), "at least 1 server process is needed"))
    if settings.log_level.lower() not in LOG_LEVELS:
        found.append((("log_level",), f"must be one of {', '.join(LOG_LEVELS)}"))
    limits = settings.limits
    # (shortest, longest) pairs: a longest below its shortest refuses every request.
    for low, high in (("min_message_ttl", "max_message_ttl"),
                      ("min_claim_ttl", "max_claim_ttl"),
                      ("min_claim_grace", "max_claim_grace"),
                      ("min_subscription_ttl", "max_subscription_ttl")):
        if getattr(limits, high) < getattr(limits, low):
            found.append((("limits", high),
                          f"below limits.{low} ({getattr(limits, low)}), the floor"))
    for name, value in msgspec.structs.asdict(limits).items():
        if isinstance(value, int) and value < 0:
            found.append((("limits", name), "cannot be negative"))
    if not limits.min_message_ttl <= limits.default_message_ttl <= limits.max_message_ttl:
        found.append((("limits", "default_message_ttl"),
                      f"must be between limits.min_message_ttl ({limits.min_message_ttl}) "
                      f"and limits.max_message_ttl ({limits.max_message_ttl})"))
    return found


def check(settings: Any, sources: Sources) -> None:
    """Raise SettingsError for the first rule ``settings`` breaks."""
    for path, problem in _problems(settings):
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        raise SettingsError(f"invalid setting {sources.describe(path, value)}: {problem}; "
                            f"fix {sources.how_to_set(path)}")
