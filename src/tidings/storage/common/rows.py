"""Rows of the SQL drivers (SQLite, PostgreSQL) as the interface's records,
where both store them alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.storage.base import Message
from tidings.storage.common.ids import IdCodec

_decode = msgspec.json.decode

# The columns message_from_row reads, in its order (both drivers select
# them so).
MESSAGE_COLUMNS = "id, body, created, expires, claim_id, claim_expires, claim_count"


def message_from_row(ids: IdCodec, row: Sequence[Any], now: float) -> Message:
    """The message of a row of MESSAGE_COLUMNS (more columns may follow):
    its claim shows only while the claim lasts."""
    rowid, body, created, expires, claim_id, claim_expires, claim_count = row[:7]
    claimed = claim_id is not None and claim_expires > now
    return Message(
        id=ids.message_id(rowid),
        ttl=round(expires - created),
        age=int(now - created),
        body=_decode(body),
        claim_id=claim_id if claimed else None,
        claim_count=claim_count,
    )
