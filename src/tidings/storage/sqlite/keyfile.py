"""Secrets kept beside the SQLite database, one small file each.

``<database>.<name>.key`` holds 64 hex digits, readable by the owner only
(0600). Several processes may open the database for the first time at
once (``serve --workers N``): each writes a candidate to a private
temporary file and links it to the final name, which fails for all but the
first; then every one reads the file that won. A reader thus never sees a
half-written key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

KEY_HEX_DIGITS = 64


def key_path(database: str, name: str) -> Path:
    return Path(f"{database}.{name}.key")


def read_or_create(path: Path) -> str:
    """The key in ``path``, made first if there is none."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(KEY_HEX_DIGITS // 2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first
            os.link(candidate, path)
    finally:
        os.unlink(candidate)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if len(key) != KEY_HEX_DIGITS or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"{path} does not hold a key of {KEY_HEX_DIGITS} hex digits")
    return key
