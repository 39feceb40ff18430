"""SQLite messages: post, move, list, get, delete, pop."""

from __future__ import annotations

import builtins
import sqlite3
from typing import Any, Sequence

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    Message,
    NewMessage,
)
from tidings.storage.common.claims import check_delete_allowed
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.common.outbox import POST_WROTE_DELIVERIES
from tidings.storage.common.rows import message_from_row
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.core import (
    SqliteCore,
    encode_json,
    ensure_queue,
    find_queue,
    inserted_rowid,
    new_token,
)

# Rows per INSERT statement (six parameters each, far below SQLite's cap).
INSERT_CHUNK = 500


class SqliteMessages(base.MessageController):
    """Writes are jobs of the group commit writer (writer.py); reads run on
    the reader connection, in the event loop."""

    d: SqliteCore

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        now = self.d.clock()
        # Encode outside the writer thread: it is the one serial resource.
        rows = [
            (encode_json(m.body), now, now + m.ttl, now + m.delay, client_id) for m in messages
        ]
        key = (project, queue)
        driver = self.d

        def job(conn: sqlite3.Connection) -> tuple[list[str], bool]:
            ids, notified = _insert_messages(driver.ids, conn, project, queue, rows,
                                             [m.ttl for m in messages], now, driver.writer.notes)
            driver.posted.add(key)
            return ids, notified

        ids, notified = await self.d.writer.run(job)
        # Without a delivery, the delivery worker need not be woken
        # (storage/common/outbox.py).
        POST_WROTE_DELIVERIES.set(notified)
        return ids

    async def move(
        self, project: str, src: str, dst: str, ids: Sequence[str], claim_id: str,
        ttl: int | None = None,
    ) -> list[str]:
        """Atomic: the copies and the deletes are one write job (one
        transaction), so a crash leaves either both or neither."""
        rowids = self.d.ids.parse_message_ids(ids)
        now = self.d.clock()
        driver = self.d

        def job(conn: sqlite3.Connection) -> list[str]:
            src_id = find_queue(conn, project, src)
            if src_id is None or not rowids:
                return []
            rows, ttls, moved = [], [], []
            for rowid in rowids:
                row = conn.execute(q.MESSAGE_FOR_MOVE, (rowid, src_id, now)).fetchone()
                if row is None or row[4] != claim_id or row[5] <= now:
                    continue  # gone, or not (or no longer) under this claim
                body, created, expires, client_id = row[:4]
                life = ttl if ttl is not None else max(1, round(expires - created))
                rows.append((body, now, now + life, now, client_id))
                ttls.append(life)
                moved.append((rowid,))
            if not rows:
                return []
            new_ids, _ = _insert_messages(driver.ids, conn, project, dst, rows, ttls, now)
            conn.executemany(q.MESSAGE_DELETE, moved)
            driver.posted.add((project, dst))
            return new_ids

        return await self.d.writer.run(job)

    async def _list(self, project: str, queue: str, marker: str | None, limit: int,
                    exclude: str | None, claimed: bool, delayed: bool, now: float,
                    ) -> tuple[list[Message], str | None]:
        after = self.d.ids.marker(IdKind.MESSAGE, marker)
        filters, args = "", list[Any]()
        if not claimed:
            filters += q.MESSAGE_PAGE_NOT_CLAIMED
            args.append(now)
        if not delayed:
            filters += q.MESSAGE_PAGE_NOT_DELAYED
            args.append(now)
        if exclude is not None:
            filters += q.MESSAGE_PAGE_NOT_OWN
            args.append(exclude)
        sql = q.MESSAGE_PAGE.format(filters=filters)
        params = (project, queue, after, now, *args, limit)
        rows = self.d.read(lambda c: c.execute(sql, params).fetchall())
        page = [message_from_row(self.d.ids, row, now) for row in rows]
        return page, (self.d.ids.message_id(rows[-1][0]) if rows else None)

    async def get(self, project: str, queue: str, message_id_: str) -> Message:
        rowid = self.d.ids.parse_message_id(message_id_)
        now = self.d.clock()
        row = None
        if rowid is not None:
            row = self.d.read(
                lambda c: c.execute(q.MESSAGE_GET, (rowid, now, project, queue)).fetchone()
            )
        if row is None:
            raise errors.MessageDoesNotExist(
                f"Message {message_id_} does not exist in queue {queue}."
            )
        return message_from_row(self.d.ids, row, now)

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        now = self.d.clock()
        found = []
        for text in dict.fromkeys(ids):
            rowid = self.d.ids.parse_message_id(text)
            if rowid is None:
                continue
            row = self.d.read(
                lambda c: c.execute(q.MESSAGE_GET, (rowid, now, project, queue)).fetchone()
            )
            if row is not None:
                found.append(message_from_row(self.d.ids, row, now))
        return found

    async def delete(
        self, project: str, queue: str, message_id_: str, claim_id: str | None
    ) -> None:
        await self.bulk_delete(
            project, queue, [message_id_], None if claim_id is None else [claim_id],
            single=True,
        )

    async def bulk_delete(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        *,
        single: bool = False,
    ) -> None:
        rowids = self.d.ids.parse_message_ids(ids)
        allowed = set(claim_ids or ())
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> None:
            queue_id = find_queue(conn, project, queue, self.d.writer.notes)
            if queue_id is None:
                return
            doomed = []
            for rowid in rowids:
                row = conn.execute(q.MESSAGE_CLAIM_STATE, (rowid, queue_id, now)).fetchone()
                if row is None:
                    continue  # deleting what is gone is not an error
                check_delete_allowed(row[0], row[1], allowed, claim_ids is not None and single, now)
                doomed.append((rowid,))
            conn.executemany(q.MESSAGE_DELETE, doomed)

        await self.d.writer.run(job)

    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> list[Message]:
            queue_id = find_queue(conn, project, queue, self.d.writer.notes)
            if queue_id is None:
                return []
            rows = conn.execute(q.MESSAGES_CLAIMABLE, (queue_id, now, now, now, limit)).fetchall()
            conn.executemany(q.MESSAGE_DELETE, [(row[0],) for row in rows])
            return [message_from_row(self.d.ids, row, now) for row in rows]

        return await self.d.writer.run(job)


def _insert_messages(
    ids: IdCodec,
    conn: sqlite3.Connection, project: str, queue: str, rows: list[tuple[Any, ...]],
    ttls: list[int], now: float, noted: dict[Any, Any] | None = None,
) -> tuple[list[str], bool]:
    """Append rows (body, created, expires, available, client_id) to the
    queue, creating it if needed, with their notifications; the new ids,
    and whether a notification was written."""
    queue_id = ensure_queue(conn, project, queue, now, noted)
    # One multi-row INSERT per chunk rather than executemany's statement
    # per row: a third less time for a post of ten.
    last = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        last = inserted_rowid(conn.execute(q.message_insert(len(chunk)),
                            [value for row in chunk for value in (queue_id, *row)]))
    # One writer, one transaction: the ids of this batch are consecutive.
    first = last - len(rows) + 1
    # The outbox, in the same transaction: one indexed lookup, which
    # finds nobody on most queues.
    subscribers = conn.execute(q.SUBSCRIPTIONS_TO_NOTIFY, (project, queue, now)).fetchall()
    if subscribers:
        token = new_token()
        conn.executemany(
            q.DELIVERY_INSERT,
            [
                (token, sub, 0, first + i, ttl, row[0], now, now)
                for i, (ttl, row) in enumerate(zip(ttls, rows))
                for (sub,) in subscribers
            ],
        )
    return ids.message_ids(range(first, last + 1)), bool(subscribers)


