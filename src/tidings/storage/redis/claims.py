"""Claims, and the dead-letter moves that claiming triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.crc import key_slot

from tidings import errors
from tidings.storage import base
from tidings.storage.base import Claim, ClaimRequest, ClaimResult
from tidings.storage.redis import scripts
from tidings.storage.redis.messages import decode_record, new_salt, sequence_seed, to_messages

if TYPE_CHECKING:
    from tidings.storage.redis.core import RedisCore

# A cross-slot dead-letter move handles this many parked messages per step.
DEAD_LETTER_BATCH = 100


class RedisClaims(base.ClaimController):
    d: RedisCore

    def _same_slot(self, a: str, b: str) -> bool:
        return not self.d.cluster or key_slot(a.encode()) == key_slot(b.encode())

    async def _create(self, project: str, queue: str, claim: ClaimRequest) -> ClaimResult:
        now, claim_id, dead_letter = claim.now, claim.claim_id, claim.dead_letter
        queue_base = self.d.keys.queue(project, queue)
        keys = [queue_base]
        mode, max_count, dlq_name, dlq_ttl = "drop", 0, "", 0
        if dead_letter is not None:
            max_count = dead_letter.max_claim_count
            dlq_ttl = dead_letter.ttl or 0
            if dead_letter.queue:
                dlq_name = dead_letter.queue
                dlq_base = self.d.keys.queue(project, dlq_name)
                # One atomic script when both queues share a slot (always on
                # a single server); else a two-step move safe to repeat.
                if self._same_slot(queue_base, dlq_base):
                    mode = "local"
                    keys.append(dlq_base)
                else:
                    mode = "remote"
        # moved counts the messages parked for another slot as well: the
        # script committed their move, which finish_dead_letters completes
        # (or, after a crash, the next claim or gc) without counting again.
        dlq_created, parked, flat, moved = await self.d.run(
            scripts.claim,
            keys,
            [repr(now), claim_id, claim.ttl, claim.grace, claim.limit, max_count, mode, dlq_name,
             dlq_ttl, sequence_seed(now), new_salt()],
        )
        if dlq_created:
            await self.d.index_queue(project, dlq_name)
        if parked:
            await self.finish_dead_letters(project, queue_base)
        if not flat:
            return ClaimResult(None, dead_lettered=moved)
        return ClaimResult(claim_id, to_messages(flat, now), moved)

    async def finish_dead_letters(self, project: str, queue_base: str) -> None:
        """Move the messages a claim parked for a dead letter queue in
        another slot: add each to that queue (once: a receipt makes a
        repeat a no-op), then delete it from the source. A crash between
        the steps leaves them parked; the next claim or gc finishes."""
        source = queue_base[queue_base.index("{") + 1:queue_base.index("}")]
        while True:
            flat = await self.d.run(scripts.dead_letter_take, [queue_base], [DEAD_LETTER_BATCH])
            if not flat:
                return
            now = self.d.clock()
            by_queue: dict[str, list[Any]] = {}
            ids: list[bytes] = []
            for i in range(0, len(flat), 3):
                mid, parked, body = flat[i], flat[i + 1], flat[i + 2]
                dlq_name, dlq_ttl, record = decode_record(parked)
                expires = now + dlq_ttl if dlq_ttl else record[1]
                receipt = f"{source}/{mid.decode()}"
                by_queue.setdefault(dlq_name, []).extend(
                    [receipt, repr(expires), record[6], body if body is not None else b"null"]
                )
                ids.append(mid)
            for dlq_name, args in by_queue.items():
                created = await self.d.run(
                    scripts.dead_letter_put,
                    [self.d.keys.queue(project, dlq_name)],
                    [repr(now), sequence_seed(now), new_salt(), *args],
                )
                if created:
                    await self.d.index_queue(project, dlq_name)
            await self.d.run(scripts.dead_letter_done, [queue_base], ids)

    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        now = self.d.clock()
        found = await self.d.run(
            scripts.claim_get, [self.d.keys.queue(project, queue)], [repr(now), claim_id]
        )
        if not found:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
        raw, flat = found
        ttl, grace, created, _expires, _ids = decode_record(raw)
        return Claim(
            id=claim_id,
            ttl=int(ttl),
            grace=int(grace),
            age=int(now - created),
            messages=to_messages(flat, now),
        )

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        renewed = await self.d.run(
            scripts.claim_update,
            [self.d.keys.queue(project, queue)],
            [repr(self.d.clock()), claim_id, ttl, grace],
        )
        if not renewed:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        await self.d.run(scripts.claim_delete, [self.d.keys.queue(project, queue)], [claim_id])
