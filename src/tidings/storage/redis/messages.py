"""Messages: post, list, get, delete, pop; each one Lua script."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tidings import errors
from tidings.storage import base
from tidings.storage.base import Message, NewMessage
from tidings.storage.common.outbox import POST_WROTE_DELIVERIES
from tidings.storage.redis import scripts
from tidings.storage.redis.keys import member_tag

if TYPE_CHECKING:
    from tidings.storage.redis.core import RedisCore

_encode = msgspec.json.encode
_decode = msgspec.json.decode
decode_record = msgspec.msgpack.Decoder(list).decode
# The digits of the hex parts of ids.
HEX = frozenset("0123456789abcdef")
SALT_LENGTH = 8

# Delete script results (scripts.DELETE).
_DELETE_ERRORS: dict[int, tuple[type[errors.TidingsError], str]] = {
    1: (errors.MessageIsClaimed,
        "This message is claimed; it cannot be deleted without a valid claim ID."),
    2: (errors.ClaimDoesNotExist, "The specified claim does not exist or has expired."),
    3: (errors.MessageNotClaimed,
        "A claim was specified, but the message is not currently claimed."),
}


def message_id(seq: int, salt: str) -> str:
    """16 hex digits of the queue's sequence, then the queue's salt."""
    return f"{seq:016x}{salt}"


def is_message_id(text: str) -> bool:
    """Whether we could have issued ``text``: anything else is not found."""
    return len(text) == 16 + SALT_LENGTH and HEX.issuperset(text)


def new_salt() -> str:
    return secrets.token_hex(SALT_LENGTH // 2)


def sequence_seed(now: float) -> str:
    """Where a new queue's sequence starts: the clock in microseconds."""
    return str(int(now * 1_000_000))


def to_message(mid: bytes | str, raw: bytes, body: bytes, now: float) -> Message:
    created, expires, _available, count, claim_id, claim_expires, _client = decode_record(raw)
    claimed = bool(claim_id) and claim_expires > now
    return Message(
        id=mid.decode() if isinstance(mid, bytes) else mid,
        ttl=round(expires - created),
        age=int(now - created),
        body=_decode(body),
        claim_id=claim_id if claimed else None,
        claim_count=int(count),
    )


def to_messages(flat: list[Any], now: float) -> list[Message]:
    """A script's flat {id, record, body}* reply as Messages."""
    return [to_message(flat[i], flat[i + 1], flat[i + 2], now) for i in range(0, len(flat), 3)]


class RedisMessages(base.MessageController):
    d: RedisCore

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        if not messages:
            return []
        now = self.d.clock()
        args: list[Any] = [repr(now), sequence_seed(now), new_salt(), client_id, len(messages)]
        for m in messages:
            args += [m.ttl, m.delay, _encode(m.body)]
        member = self.d.keys.member(project, queue)
        # For the deliveries of the queue's subscriptions, if it has any.
        args += [sequence_seed(now), new_salt(), member_tag(member)]
        # The request token (scripts.POST): only Redis Cluster's client sends
        # a command twice; a single server's never retries (driver.py).
        args.append(secrets.token_hex(8) if self.d.cluster else "")
        created, first, salt, written = await self.d.run(
            scripts.post, [self.d.keys.queue_from_member(member)], args
        )
        if created:
            await self.d.index_queue(project, queue)
        if written:
            await self.d.deliveries.lower(member, now)
        # Without a delivery, the delivery worker need not be woken: each wake
        # would cost it a look at the outbox (storage/common/outbox.py).
        POST_WROTE_DELIVERIES.set(bool(written))
        # One script: the sequence numbers of the batch are consecutive.
        return [message_id(first + i, salt.decode()) for i in range(len(messages))]

    async def _list(self, project: str, queue: str, marker: str | None, limit: int,
                    exclude: str | None, claimed: bool, delayed: bool, now: float,
                    ) -> tuple[list[Message], str | None]:
        # Markers order by sequence alone: one of another queue still pages.
        after = int(marker[:16], 16) if marker and is_message_id(marker) else 0
        flat = await self.d.run(
            scripts.list_messages,
            [self.d.keys.queue(project, queue)],
            [repr(now), after, limit, int(claimed), int(delayed), exclude or ""],
        )
        page = to_messages(flat, now)
        return page, (page[-1].id if page else None)

    async def get(self, project: str, queue: str, message_id_: str) -> Message:
        found = await self.bulk_get(project, queue, [message_id_])
        if not found:
            raise errors.MessageDoesNotExist(
                f"Message {message_id_} does not exist in queue {queue}."
            )
        return found[0]

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        wanted = [i for i in dict.fromkeys(ids) if is_message_id(i)]
        if not wanted:
            return []
        now = self.d.clock()
        flat = await self.d.run(
            scripts.get, [self.d.keys.queue(project, queue)], [repr(now), *wanted]
        )
        return to_messages(flat, now)

    async def delete(
        self, project: str, queue: str, message_id_: str, claim_id: str | None
    ) -> None:
        await self._delete(
            project, queue, [message_id_], None if claim_id is None else [claim_id], strict=True
        )

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        await self._delete(project, queue, ids, claim_ids, strict=False)

    async def _delete(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        *,
        strict: bool,
    ) -> None:
        wanted = [i for i in dict.fromkeys(ids) if is_message_id(i)]
        if not wanted:
            return
        claims = list(claim_ids or ())
        # Strict (a single delete naming a claim) also refuses a claim id for
        # a message that is not claimed, as Zaqar does.
        strict = strict and claim_ids is not None
        result = await self.d.run(
            scripts.delete,
            [self.d.keys.queue(project, queue)],
            [repr(self.d.clock()), int(strict), len(claims), *claims, *wanted],
        )
        if result:
            error, description = _DELETE_ERRORS[int(result)]
            raise error(description)

    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        if limit <= 0:
            return []
        now = self.d.clock()
        flat = await self.d.run(scripts.pop, [self.d.keys.queue(project, queue)],
                                [repr(now), limit])
        return to_messages(flat, now)
