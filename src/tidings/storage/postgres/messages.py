"""PostgreSQL messages: post, list, get, delete, move, pop."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import asyncpg

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    Message,
    NewMessage,
)
from tidings.storage.common.claims import check_delete_allowed
from tidings.storage.common.ids import IdKind
from tidings.storage.common.outbox import POST_WROTE_DELIVERIES
from tidings.storage.common.rows import message_from_row
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import (
    RETRIES,
    PostgresCore,
    encode_json,
    lock_queue,
)
from tidings.storage.postgres.writer import DeleteWriter, PostWriter


class PostgresMessages(base.MessageController):
    d: PostgresCore

    def __init__(self, driver: PostgresCore) -> None:
        super().__init__(driver)
        # Concurrent posts (deletes) of one queue share a statement (writer.py).
        self.writer = PostWriter(driver)
        self.deletes = DeleteWriter(driver)

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        if not messages:
            await self.d.fetchval(q.QUEUE_INSERT, project, queue, b"{}", "{}", self.d.clock())
            return []
        rowids, delivered = await self.writer.post(
            project, queue, client_id, [encode_json(m.body) for m in messages],
            [int(m.ttl) for m in messages], [int(m.delay) for m in messages])
        # This process's watches need not wait for the NOTIFY (nor for one
        # at all under notify=false).
        self.d.wake_watches(project, queue)
        POST_WROTE_DELIVERIES.set(delivered)
        return [self.d.ids.message_id(rowid) for rowid in rowids]

    async def _list(self, project: str, queue: str, marker: str | None, limit: int,
                    exclude: str | None, claimed: bool, delayed: bool, now: float,
                    ) -> tuple[list[Message], str | None]:
        after = self.d.ids.marker(IdKind.MESSAGE, marker)
        rows = await self.d.fetch(
            q.MESSAGE_PAGE, project, queue, after, now, claimed, delayed, exclude, limit,
        )
        page = [message_from_row(self.d.ids, row, now) for row in rows]
        return page, (page[-1].id if page else None)

    async def get(self, project: str, queue: str, message_id_: str) -> Message:
        rowid = self.d.ids.parse_message_id(message_id_)
        now = self.d.clock()
        rows = []
        if rowid is not None:
            rows = await self.d.fetch(q.MESSAGES_GET, [rowid], now, project, queue)
        if not rows:
            raise errors.MessageDoesNotExist(
                f"Message {message_id_} does not exist in queue {queue}."
            )
        return message_from_row(self.d.ids, rows[0], now)

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return []
        now = self.d.clock()
        rows = await self.d.fetch(q.MESSAGES_GET, rowids, now, project, queue)
        found = {row[0]: row for row in rows}
        # In the order asked for, as the SQLite driver answers.
        return [message_from_row(self.d.ids, found[r], now) for r in rowids if r in found]

    async def delete(
        self, project: str, queue: str, message_id_: str, claim_id: str | None
    ) -> None:
        rowid = self.d.ids.parse_message_id(message_id_)
        if rowid is None:
            return
        # The common case in one statement, shared with concurrent deletes
        # (writer.py): it deletes only what may go.
        if await self.deletes.delete(project, queue, rowid, claim_id):
            return
        now = self.d.clock()
        allowed = set() if claim_id is None else {claim_id}

        async def job(conn: asyncpg.Connection) -> None:
            for _ in range(RETRIES):
                # When nothing went, the message's state says why.
                row = await conn.fetchrow(q.MESSAGE_CLAIM_STATE, [rowid], now, project, queue)
                if row is None:
                    return  # deleting what is gone is not an error
                check_delete_allowed(row[1], row[2], allowed, claim_id is not None, now)
                # Allowed now: its claim changed between the two statements.
                if await conn.fetchval(q.MESSAGE_DELETE_CHECKED, [rowid], now, project, queue,
                                       [claim_id]) is not None:
                    return
            raise errors.ServiceUnavailable("The message kept changing; try again.")

        await self.d.run(job)

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return
        allowed = set(claim_ids or ())
        now = self.d.clock()

        async def job(conn: asyncpg.Connection) -> None:
            # Locked, so no claim lands between the check and the delete.
            rows = await conn.fetch(
                q.MESSAGE_CLAIM_STATE_FOR_DELETE, rowids, now, project, queue
            )
            for row in rows:
                check_delete_allowed(row[1], row[2], allowed, False, now)
            if rows:
                await conn.execute(q.MESSAGES_DELETE_IDS, [row[0] for row in rows])

        await self.d.run(job, transaction=True)

    async def move(
        self, project: str, src: str, dst: str, ids: Sequence[str], claim_id: str,
        ttl: int | None = None,
    ) -> builtins.list[str]:
        """Atomic: the copies (MESSAGES_POST, outbox included) and the deletes
        are one transaction; the moved rows stay locked until it commits."""
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return []
        now = self.d.clock()
        channel, payload = self.d.notify_args(project, dst)

        async def job(conn: asyncpg.Connection) -> list[str]:
            rows = {row[0]: row for row in
                    await conn.fetch(q.MESSAGES_FOR_MOVE, rowids, now, project, src)}
            chosen = [rows[r] for r in rowids if r in rows
                      and rows[r][5] == claim_id and rows[r][6] > now]
            if not chosen:
                return []
            await lock_queue(conn, project, dst, now)
            ttls = [ttl if ttl is not None else max(1, round(row[3] - row[2]))
                    for row in chosen]
            # Each copy keeps its own client id.
            posted = await conn.fetch(
                q.MESSAGES_POST, [project], [dst], [payload], now, [1] * len(chosen),
                [row[4] for row in chosen], [row[1] for row in chosen], ttls,
                [0] * len(chosen), channel,
            )
            new_ids = [self.d.ids.message_id(row[0]) for row in posted]
            await conn.execute(q.MESSAGES_DELETE_IDS, [row[0] for row in chosen])
            return new_ids

        moved = await self.d.run(job, transaction=True)
        if moved:
            self.d.wake_watches(project, dst)
        return moved

    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        now = self.d.clock()
        rows = await self.d.fetch(q.MESSAGES_POP, project, queue, now, limit)
        return [message_from_row(self.d.ids, row, now)
                for row in sorted(rows, key=lambda row: row[0])]

