"""One typed settings object, read from a TOML file and TIDINGS_* variables.

Precedence, lowest first: defaults, the TOML file, environment variables,
then command-line flags (applied by the CLI). A nested field is named in the
environment with a double underscore: ``TIDINGS_LIMITS__MAX_MESSAGES_PER_PAGE``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

import msgspec

ENV_PREFIX = "TIDINGS_"
# Not settings themselves: where to find them.
CONFIG_ENV = ENV_PREFIX + "CONFIG"
WORKER_SETTINGS_ENV = ENV_PREFIX + "WORKER_SETTINGS"


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Zaqar's default limits; every one can be changed."""

    max_queue_name_length: int = 64
    max_project_id_length: int = 256
    max_queues_per_page: int = 20
    max_messages_per_page: int = 20
    max_messages_per_claim_or_pop: int = 20
    max_messages_post_size: int = 256 * 1024
    max_queue_metadata: int = 64 * 1024
    max_message_ttl: int = 1_209_600
    min_message_ttl: int = 60
    default_message_ttl: int = 3600
    max_message_delay: int = 900
    max_claim_ttl: int = 43_200
    min_claim_ttl: int = 60
    max_claim_grace: int = 43_200
    min_claim_grace: int = 60
    default_claim_ttl: int = 300
    default_claim_grace: int = 60
    default_messages_per_page: int = 10
    default_messages_per_claim: int = 10
    default_queues_per_page: int = 10


class WebSocketSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The WebSocket transport, served at ``/`` on the HTTP port."""

    # Seconds between keepalive pings to each open socket; 0 disables them.
    ping_interval: float = 20.0
    # Seconds to wait for the pong before the socket is closed.
    ping_timeout: float = 20.0
    # The largest request frame answered; a larger one gets an error reply
    # and the socket stays open. (A frame over 16 times this closes it.)
    max_frame_size: int = 1024 * 1024


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8888
    # Server processes sharing the port; each holds no state the others need.
    workers: int = 1
    # Where data lives; the scheme picks the driver (see storage.registry).
    storage: str = "sqlite:///./data/tidings.db"
    # "full": a write is acknowledged only after fsync (the default);
    # "normal": survives a crash of the process but not of the machine.
    sqlite_sync: str = "full"
    # Seconds between garbage-collection passes in the server; 0 disables.
    gc_interval: float = 30.0
    log_level: str = "info"
    limits: Limits = msgspec.field(default_factory=Limits)
    websocket: WebSocketSettings = msgspec.field(default_factory=WebSocketSettings)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn TIDINGS_A__B=v into {"a": {"b": v}}; values stay strings."""
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (CONFIG_ENV, WORKER_SETTINGS_ENV):
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from a TOML file, the environment and overrides.

    Raises ``ValueError`` with a readable message when a value is invalid.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # strict=False lets "8888" from the environment become an int.
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid configuration: {exc}") from exc
