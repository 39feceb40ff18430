"""PostgreSQL claims, and the dead letter move a claim may make."""

from __future__ import annotations

import asyncpg

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    Claim,
    ClaimRequest,
    ClaimResult,
    DeadLetterPolicy,
)
from tidings.storage.common.rows import message_from_row
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import (
    PostgresCore,
    lock_queue,
    rowcount,
)
from tidings.storage.postgres.writer import ClaimWriter


class PostgresClaims(base.ClaimController):
    d: PostgresCore

    def __init__(self, driver: PostgresCore) -> None:
        super().__init__(driver)
        self.writer = ClaimWriter(driver)

    async def _create(self, project: str, queue: str, claim: ClaimRequest) -> ClaimResult:
        now, claim_id, ttl, grace, limit = (claim.now, claim.claim_id, claim.ttl, claim.grace,
                                            claim.limit)
        dead_letter = claim.dead_letter
        moved = 0
        if dead_letter is None:
            # Pick, mark and record in one statement, shared with the
            # concurrent claims of the queue (writer.py).
            rows = await self.writer.claim(project, queue, claim)
        else:
            # The count comes back with the rows of the attempt that
            # committed: a retried transaction starts its count afresh.
            rows, moved = await self.d.run(
                lambda conn: self._create_with_dead_letter(
                    conn, project, queue, now, limit, claim_id, ttl, grace, dead_letter
                ),
                transaction=True,
            )
        if not rows:
            return ClaimResult(None, dead_lettered=moved)
        messages = [message_from_row(self.d.ids, row, now)
                    for row in sorted(rows, key=lambda row: row[0])]
        for message in messages:
            message.claim_id = claim_id
        return ClaimResult(claim_id, messages, moved)

    async def _create_with_dead_letter(
        self,
        conn: asyncpg.Connection,
        project: str,
        queue: str,
        now: float,
        limit: int,
        claim_id: str,
        ttl: int,
        grace: int,
        policy: DeadLetterPolicy,
    ) -> tuple[list[asyncpg.Record], int]:
        """The claimed rows, and how many messages were moved to the dead
        letter queue."""
        claim_expires = now + ttl
        claimed: list[asyncpg.Record] = []
        moved = 0
        queue_id = None
        # Dead-lettered messages free their slot, so look again until the
        # claim is full or the queue has nothing left to offer.
        while len(claimed) < limit:
            want = limit - len(claimed)
            rows = await conn.fetch(q.MESSAGES_CLAIMABLE, project, queue, now, want)
            if not rows:
                break
            queue_id = rows[0]["queue_id"]
            dead = [row[0] for row in rows if row["claim_count"] >= policy.max_claim_count]
            taken = [row[0] for row in rows if row["claim_count"] < policy.max_claim_count]
            if dead:
                moved += await _dead_letter(conn, project, dead, policy, now)
            if taken:
                # Marked now, so the next look skips them.
                claimed += await conn.fetch(
                    q.MESSAGES_MARK_CLAIMED, claim_id, claim_expires, claim_expires + grace, taken
                )
            if len(rows) < want:
                break
        if claimed:
            await conn.execute(q.CLAIM_INSERT, claim_id, queue_id, ttl, grace, now, claim_expires)
        return claimed, moved

    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        now = self.d.clock()
        rows = await self.d.fetch(q.CLAIM_GET, claim_id, now, project, queue)
        if not rows:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
        first = rows[0]
        return Claim(
            id=first["claim_id_"],
            ttl=first["ttl"],
            grace=first["grace"],
            age=int(now - first["claim_created"]),
            messages=[message_from_row(self.d.ids, tuple(row)[4:], now)
                      for row in rows if row["id"] is not None],
        )

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        now = self.d.clock()
        renewed = await self.d.fetchval(
            q.CLAIM_RENEW, claim_id, ttl, grace, now, now + ttl, now + ttl + grace, project, queue
        )
        if not renewed:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        await self.d.execute(q.CLAIM_DELETE, claim_id, project, queue)


async def _dead_letter(
    conn: asyncpg.Connection,
    project: str,
    rowids: list[int],
    policy: DeadLetterPolicy,
    now: float,
) -> int:
    """Move messages to the dead letter queue under new ids (so observers
    paging the DLQ by marker see them), or drop them if none is set.
    Returns how many were moved (0 for a drop)."""
    if policy.queue:
        dlq_id = await lock_queue(conn, project, policy.queue, now)
        expires = now + policy.ttl if policy.ttl else None
        # The rows the INSERT wrote: only messages the DELETE really took.
        return rowcount(await conn.execute(q.MESSAGES_MOVE, dlq_id, now, expires, rowids))
    await conn.execute(q.MESSAGES_DELETE_IDS, rowids)
    return 0

