"""SQLite claims, and the dead letter move a claim may make."""

from __future__ import annotations

import sqlite3
from typing import Any

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    Claim,
    ClaimRequest,
    ClaimResult,
    DeadLetterPolicy,
    Message,
)
from tidings.storage.common.rows import message_from_row
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.core import (
    SqliteCore,
    decode_json,
    ensure_queue,
    find_queue,
)


class SqliteClaims(base.ClaimController):
    """Each claim is one write job; the claims that share a transaction
    share a floor per queue (see ``_create``)."""

    d: SqliteCore

    async def _create(self, project: str, queue: str, claim: ClaimRequest) -> ClaimResult:
        now, claim_id, ttl, grace, limit = (claim.now, claim.claim_id, claim.ttl, claim.grace,
                                            claim.limit)
        claim_expires, keep_until, dead_letter = claim.expires, claim.keep_until, claim.dead_letter

        def job(conn: sqlite3.Connection) -> ClaimResult:
            queue_id = find_queue(conn, project, queue, self.d.writer.notes)
            if queue_id is None:
                return ClaimResult(None)
            claimed: list[tuple[Any, ...]] = []
            # Counted inside the job: its result is handed back only once
            # the transaction committed, so an undone move is never counted.
            moved = 0
            # Concurrent claims share a transaction (writer.py) and each
            # scanned from the queue's head past the rows the ones before
            # it had just taken: 32 claims of 10 walked ~5,000 rows with a
            # table lookup each, on the event loop (py-spy: claim p50 4x a
            # delete's, all of it in the writer). A claim leaves the last
            # row it looked at as the queue's floor for the transaction; the
            # next claim starts after it. Rows up to the floor were taken
            # or not claimable a moment before; a claim release in the same
            # transaction drops the floors (SqliteClaims.delete).
            floors: dict[Any, int | None] = self.d.writer.notes.setdefault("claim_floors", {})
            floor = floors.get(queue_id)
            # Dead-lettered messages free their slot, so look again until
            # the claim is full or the queue has nothing left to offer.
            while len(claimed) < limit:
                want = limit - len(claimed)
                if floor is None:
                    rows = conn.execute(
                        q.MESSAGES_CLAIMABLE, (queue_id, now, now, now, want)
                    ).fetchall()
                else:
                    rows = conn.execute(
                        q.MESSAGES_CLAIMABLE_AFTER, (queue_id, floor, now, now, now, want)
                    ).fetchall()
                if not rows:
                    break
                floor = rows[-1][0]
                taken = []
                for row in rows:
                    if dead_letter is not None and row[6] >= dead_letter.max_claim_count:
                        moved += _dead_letter(conn, project, row, dead_letter, now)
                    else:
                        taken.append(row)
                # Mark this batch claimed now, so the next look skips it.
                conn.executemany(
                    q.MESSAGE_CLAIM,
                    [(claim_id, claim_expires, keep_until, row[0]) for row in taken],
                )
                claimed += taken
                if len(rows) < want:
                    break
            if not claimed:
                return ClaimResult(None, dead_lettered=moved)
            conn.execute(q.CLAIM_INSERT, (claim_id, queue_id, ttl, grace, now, claim_expires))
            messages = []
            for row in claimed:
                rowid, body, created, expires, _, _, count = row
                messages.append(
                    Message(
                        id=self.d.ids.message_id(rowid),
                        ttl=round(max(expires, keep_until) - created),
                        age=int(now - created),
                        body=decode_json(body),
                        claim_id=claim_id,
                        claim_count=count + 1,
                    )
                )
            # Last: a job that raises is undone, and so must its floor be.
            floors[queue_id] = floor
            return ClaimResult(claim_id, messages, moved)

        return await self.d.writer.run(job)

    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        now = self.d.clock()

        def read(conn: sqlite3.Connection) -> Claim:
            row = conn.execute(q.CLAIM_GET, (claim_id, now, project, queue)).fetchone()
            if row is None:
                raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
            rows = conn.execute(q.CLAIM_MESSAGES, (claim_id, now, now)).fetchall()
            return Claim(
                id=row[0],
                ttl=row[1],
                grace=row[2],
                age=int(now - row[3]),
                messages=[message_from_row(self.d.ids, r, now) for r in rows],
            )

        return self.d.read(read)

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> None:
            queue_id = find_queue(conn, project, queue, self.d.writer.notes)
            live = queue_id is not None and conn.execute(
                q.CLAIM_LIVE_IN_QUEUE, (claim_id, queue_id, now)
            ).fetchone()
            if not live:
                raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
            conn.execute(q.CLAIM_RENEW, (ttl, grace, now, now + ttl, claim_id))
            conn.execute(q.CLAIM_RENEW_MESSAGES, (now + ttl, now + ttl + grace, claim_id, now))

        await self.d.writer.run(job)

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            queue_id = find_queue(conn, project, queue, self.d.writer.notes)
            if queue_id is None:
                return
            if conn.execute(q.CLAIM_LIVE_IN_QUEUE, (claim_id, queue_id, float("-inf"))).fetchone():
                conn.execute(q.CLAIM_RELEASE_MESSAGES, (claim_id,))
                conn.execute(q.CLAIM_DELETE, (claim_id,))
                # Released rows may lie under a claim floor (see create).
                self.d.writer.notes.pop("claim_floors", None)

        await self.d.writer.run(job)


def _dead_letter(
    conn: sqlite3.Connection,
    project: str,
    row: tuple[Any, ...],
    policy: DeadLetterPolicy,
    now: float,
) -> int:
    """Move one message to the dead letter queue under a new id (so
    observers paging the DLQ by marker see it), or drop it if none is set.
    Returns how many messages were moved: 1, or 0 for a drop."""
    rowid, _, created, expires = row[:4]
    moved = 0
    if policy.queue:
        dlq_id = ensure_queue(conn, project, policy.queue, now)
        new_expires = now + policy.ttl if policy.ttl else expires
        moved = conn.execute(q.MESSAGE_MOVE, (dlq_id, now, new_expires, now, rowid)).rowcount
    conn.execute(q.MESSAGE_DELETE, (rowid,))
    return moved


