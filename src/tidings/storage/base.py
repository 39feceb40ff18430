"""The storage interface every driver implements.

It follows Zaqar's driver API (a data driver holding queue, message and claim
controllers), made async. Drivers hold no HTTP and no request validation:
they receive values the operation layer has already checked, and enforce
only what must be atomic (claims, deletes with a claim, batch posts).

Time comes from an injectable clock so tests can move it instead of
sleeping. Expired messages and claims are never returned, whether or not
garbage collection has run.
"""

from __future__ import annotations

import builtins
import secrets
import time
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Any, Callable, Protocol, Sequence, TypeVar

from tidings.storage.records import (
    Capability,
    Claim,
    ClaimRequest,
    ClaimResult,
    DeadLetterPolicy,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    GcResult,
    Message,
    MessageStat,
    NewMessage,
    NewSubscription,
    QueueFilters,
    QueueRecord,
    QueueStats,
    SchemaStatus,
    Subscription,
)

Clock = Callable[[], float]
# Called in the event loop with each message heard on a channel (DataDriver.listen).
Receive = Callable[[bytes], None]


def system_clock() -> float:
    return time.time()


F = TypeVar("F", bound=Callable[..., Any])


def operation(method: F) -> F:
    """Marks a public method that does an operation's shared work, then
    calls the driver's hook: wrapped (wrapping.py) like an abstract one."""
    setattr(method, "__operation__", True)
    return method


class PostWatch(Protocol):
    async def wait(self, timeout: float) -> bool:
        """True once a message was posted since the watch began (at once if
        one already was), False after ``timeout`` seconds without one."""


class Controller(ABC):
    """What the controllers of a driver share: ``d``, the driver they call
    back into (each driver narrows its type), whose clock the shared work
    reads. A public method with shared work (limits, claim ids, times) does
    it here and calls the driver's hook: ``list`` checks the limit,
    ``_list`` reads the backend."""

    d: Any

    def __init__(self, driver: Any) -> None:
        self.d = driver


class QueueController(Controller):
    @abstractmethod
    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        """Create the queue; False (and no change) when it exists."""

    @abstractmethod
    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        """The stored metadata; raises QueueDoesNotExist."""

    @abstractmethod
    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        """Replace the metadata; raises QueueDoesNotExist."""

    @abstractmethod
    async def delete(self, project: str, name: str) -> None:
        """Delete the queue with its messages, claims, subscriptions and
        deliveries; idempotent."""

    @operation
    async def list(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        detailed: bool,
        filters: QueueFilters | None = None,
    ) -> list[QueueRecord]:
        """Queues of the project in name order, strictly after ``marker``."""
        if limit <= 0:
            return []
        return await self._list(project, marker, limit, detailed, filters)

    @abstractmethod
    async def _list(self, project: str, marker: str | None, limit: int, detailed: bool,
                    filters: QueueFilters | None) -> builtins.list[QueueRecord]:
        """``list`` for a limit of at least 1."""

    @abstractmethod
    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        """How many queues of the project match ``filters``."""

    @abstractmethod
    async def stats(self, project: str, name: str) -> QueueStats:
        """Message counts; zeros for a queue that does not exist."""

    @abstractmethod
    async def purge_messages(self, project: str, name: str) -> None:
        """Delete every message and claim of the queue, keep the queue."""


class MessageController(Controller):
    @abstractmethod
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        """Append all messages or none; creates the queue if needed."""

    @operation
    async def list(
        self,
        project: str,
        queue: str,
        *,
        marker: str | None,
        limit: int,
        client_id: str | None,
        echo: bool,
        include_claimed: bool,
        include_delayed: bool,
    ) -> tuple[list[Message], str | None]:
        """A page of live messages after ``marker`` and the next marker."""
        if limit <= 0:
            return [], None
        return await self._list(project, queue, marker, limit, None if echo else client_id,
                                include_claimed, include_delayed, self.d.clock())

    @abstractmethod
    async def _list(self, project: str, queue: str, marker: str | None, limit: int,
                    exclude: str | None, claimed: bool, delayed: bool, now: float,
                    ) -> tuple[builtins.list[Message], str | None]:
        """``list`` for a limit of at least 1 at ``now``: without the
        messages of client ``exclude`` (when not None), with claimed and
        delayed ones when ``claimed`` and ``delayed``."""

    @abstractmethod
    async def get(self, project: str, queue: str, message_id: str) -> Message:
        """One live message of this queue; raises MessageDoesNotExist."""

    @abstractmethod
    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        """The live messages among ``ids``; unknown ids are skipped."""

    @abstractmethod
    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None
    ) -> None:
        """Delete one message, idempotent for unknown ids.

        A message under an active claim needs that claim's id
        (MessageIsClaimed otherwise); a claim id that is not the message's
        active claim raises ClaimDoesNotExist, and one given for an unclaimed
        message raises MessageNotClaimed.
        """

    @abstractmethod
    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        """Delete all of ``ids`` or none: MessageIsClaimed if one of them is
        under an active claim not named in ``claim_ids``."""

    @abstractmethod
    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        """Remove and return up to ``limit`` available, unclaimed messages."""

    # Drivers that cannot move atomically post the copies under this client id.
    MOVE_CLIENT_ID = "00000000-0000-4000-8000-00000000d1e5"

    async def move(
        self, project: str, src: str, dst: str, ids: Sequence[str], claim_id: str,
        ttl: int | None = None,
    ) -> builtins.list[str]:
        """Move the messages of ``src`` among ``ids`` that are under the live
        claim ``claim_id`` to the tail of ``dst`` (created if needed), in the
        order of ``ids``; returns their new ids in ``dst``. Messages that are
        gone, or no longer under that claim, are skipped (never moved twice).

        A moved message keeps its body; in ``dst`` it is a fresh message
        (unclaimed, claim count 0, notifications sent as for a post) whose
        ttl is ``ttl``, or its own ttl when None, counted from the move.

        Drivers override this to make it atomic (SQLite: one write job,
        PostgreSQL: one transaction). This default posts the copies and
        then deletes the originals with the claim: a crash between the two
        steps leaves the originals claimed in ``src``, to be moved again
        once the claim expires (at least once, not exactly once).
        """
        return await copy_then_delete(self, self, project, src, dst, ids, claim_id, ttl)


async def copy_then_delete(
    source: MessageController, target: MessageController, project: str, src: str, dst: str,
    ids: Sequence[str], claim_id: str, ttl: int | None,
) -> builtins.list[str]:
    """``MessageController.move``'s default, from ``source``'s queue ``src``
    to ``target``'s queue ``dst`` (one driver, or two pools'): post the
    copies, then delete the originals with the claim."""
    found = [m for m in await source.bulk_get(project, src, ids) if m.claim_id == claim_id]
    if not found:
        return []
    batch = [NewMessage(body=m.body, ttl=ttl or m.ttl) for m in found]
    new_ids = await target.post(project, dst, batch, MessageController.MOVE_CLIENT_ID)
    await source.bulk_delete(project, src, [m.id for m in found], [claim_id])
    return new_ids


class ClaimController(Controller):
    @operation
    async def create(
        self,
        project: str,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: DeadLetterPolicy | None,
    ) -> ClaimResult:
        """Claim up to ``limit`` messages in FIFO order.

        Messages already claimed ``dead_letter.max_claim_count`` times are
        moved to the dead letter queue instead (or dropped when it has no
        name). Returns ``ClaimResult(None, [])`` when nothing was claimable.
        A claimed message lives at least until the claim expires plus
        ``grace``.

        ``dead_lettered`` counts the messages this call moved to the dead
        letter queue, committed with the claim (dropped ones are not
        moves: they count 0). The operation layer turns it into the
        ``tidings_messages_dead_lettered_total`` metric, so a driver must
        count each move exactly once, in the call whose write made it:
        a move the driver finishes in a second step (a Redis Cluster
        dead letter queue in another slot, a pooled dead letter queue in
        another pool) counts when the claim commits to it, not again when
        it completes.
        """
        if limit <= 0:
            return ClaimResult(None)
        now = self.d.clock()
        expires = now + ttl
        return await self._create(project, queue, ClaimRequest(
            now, secrets.token_hex(12), ttl, grace, limit, expires, expires + grace, dead_letter))

    @abstractmethod
    async def _create(self, project: str, queue: str, claim: ClaimRequest) -> ClaimResult:
        """``create`` for a limit of at least 1, its claim id and times
        chosen."""

    @abstractmethod
    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        """A live claim with its messages; raises ClaimNotFound."""

    @abstractmethod
    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        """Renew a live claim from now; raises ClaimNotFound."""

    @abstractmethod
    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        """Release the claim's messages; idempotent."""


class SubscriptionController(Controller):
    """Subscriptions of a queue (topics are queues of a shadow project).

    Expired subscriptions (age >= ttl) are never returned and get no
    deliveries, whether or not gc has run.
    """

    @abstractmethod
    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        """The new subscription's id; None when the queue already has a
        live subscription with this subscriber (the caller answers with
        that one, see api/subscriptions.py).

        With ``confirmation``, a CONFIRMATION delivery whose payload is
        ``confirmation(<the new id>)`` is enqueued in the same transaction:
        a crash never leaves an unconfirmed subscription that nobody was
        asked to confirm. If ``confirmation`` raises, nothing is written.
        """

    @abstractmethod
    async def get(self, project: str, queue: str, subscription_id: str) -> Subscription:
        """Raises SubscriptionDoesNotExist."""

    @abstractmethod
    async def find(self, project: str, queue: str, subscriber: str) -> Subscription | None:
        """The live subscription of ``subscriber`` on the queue, if any."""

    @operation
    async def list(
        self, project: str, queue: str, *, marker: str | None, limit: int
    ) -> list[Subscription]:
        """Live subscriptions in creation order, strictly after ``marker``
        (a subscription id)."""
        if limit <= 0:
            return []
        return await self._list(project, queue, marker, limit)

    @abstractmethod
    async def _list(self, project: str, queue: str, marker: str | None, limit: int
                    ) -> builtins.list[Subscription]:
        """``list`` for a limit of at least 1."""

    @operation
    async def update(
        self,
        project: str,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Change the given fields; a new ttl counts from now. Raises
        SubscriptionDoesNotExist, or Conflict when another live subscription
        of the queue has the new subscriber."""
        await self._update(project, queue, subscription_id, subscriber, ttl, options)

    @abstractmethod
    async def _update(self, project: str, queue: str, subscription_id: str,
                      subscriber: str | None, ttl: int | None,
                      options: dict[str, Any] | None) -> None:
        """``update``: the fields that are not None change."""

    @abstractmethod
    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        """Raises SubscriptionDoesNotExist."""

    @abstractmethod
    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        """Idempotent. Pending deliveries of the subscription are dropped."""

    async def purge(self, project: str, queue: str) -> None:
        """Delete every subscription of the queue (a queue purge of
        "subscriptions"), as ``delete`` deletes one. This pages through
        ``list``; a driver may do it in one statement."""
        while True:
            page = await self.list(project, queue, marker=None, limit=100)
            if not page:
                return
            for subscription in page:
                await self.delete(project, queue, subscription.id)


class DeliveryController(Controller):
    """The notification outbox.

    ``MessageController.post`` writes one MESSAGE delivery per live,
    confirmed subscription of the queue in the same transaction as the
    messages, so an acknowledged post never loses a notification. Workers
    lease due deliveries; a worker that dies leaves its lease to expire and
    the delivery is leased again (at-least-once).
    """

    @abstractmethod
    async def enqueue(
        self,
        project: str,
        queue: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: dict[str, Any],
    ) -> str:
        """Add one delivery due now (e.g. a confirmation request); returns its
        id. Raises SubscriptionDoesNotExist."""

    @operation
    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Up to ``limit`` pending deliveries that are due and not leased,
        oldest due first, leased until now + ``lease_seconds``. Deliveries of
        subscriptions that expired or were deleted are not returned."""
        if limit <= 0:
            return []
        return await self._lease(limit, lease_seconds)

    @abstractmethod
    async def _lease(self, limit: int, lease_seconds: float) -> builtins.list[Delivery]:
        """``lease`` for a limit of at least 1."""

    @abstractmethod
    async def delivered(self, delivery_id: str) -> None:
        """The subscriber has it: remove the delivery."""

    @abstractmethod
    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        """Count a failed attempt, release the lease, and make the delivery
        due again at ``at``."""

    @abstractmethod
    async def dead(self, delivery_id: str, *, error: str) -> None:
        """Count a failed attempt and give up: status DEAD, kept for
        inspection until the subscription is deleted or gc removes it."""

    @operation
    async def list(
        self,
        project: str,
        queue: str,
        *,
        status: DeliveryStatus,
        marker: str | None,
        limit: int,
        subscription_id: str | None = None,
    ) -> list[Delivery]:
        """A queue's deliveries with the given status, oldest first, strictly
        after ``marker`` (a delivery id); only those of ``subscription_id``
        when given."""
        if limit <= 0:
            return []
        return await self._list(project, queue, status, marker, limit, subscription_id)

    @abstractmethod
    async def _list(self, project: str, queue: str, status: DeliveryStatus, marker: str | None,
                    limit: int, subscription_id: str | None) -> builtins.list[Delivery]:
        """``list`` for a limit of at least 1."""


def check_secret_name(name: str) -> str:
    """A ``stored_secret`` name: it becomes part of a file name or key."""
    if not name or len(name) > 64 or not all(c.isascii() and (c.isalnum() or c == "-")
                                             for c in name):
        raise ValueError(f"a secret's name is letters, digits and '-': {name!r}")
    return name


# The controllers of a driver, by attribute name: the one list that the
# wrappers (storage/wrapping.py) and fault plans go by.
CONTROLLERS: dict[str, type[Controller]] = {
    "queues": QueueController,
    "messages": MessageController,
    "claims": ClaimController,
    "subscriptions": SubscriptionController,
    "deliveries": DeliveryController,
}


def interface_methods(controller: str) -> list[str]:
    """The operations of the interface of ``controller`` (``"messages"``...):
    its public abstract methods and those marked ``@operation``; not the
    defaults built on them (``move``, ``purge``) nor the drivers' hooks."""
    cls = CONTROLLERS[controller]
    return sorted(name for name in dir(cls) if not name.startswith("_") and (
        name in cls.__abstractmethods__ or getattr(getattr(cls, name), "__operation__", False)))


class DataDriver(ABC):
    """One backend: its controllers plus life-cycle and health."""

    name: str
    capabilities: frozenset[Capability]
    queues: QueueController
    messages: MessageController
    claims: ClaimController
    subscriptions: SubscriptionController
    deliveries: DeliveryController

    # Whether open() creates or upgrades the schema. The servers and
    # ``tidings migrate`` open with it; ``tidings check`` and the admin
    # commands without it, so a schema too old is reported, not changed. A
    # driver whose open() never changes a schema's version ignores it.
    migrate_on_open: bool = True

    @abstractmethod
    async def open(self) -> None:
        """Connect and prepare the schema (see ``migrate_on_open``); called
        once before use."""

    @abstractmethod
    async def close(self) -> None:
        ...

    @abstractmethod
    async def migrate(self) -> int:
        """Create or upgrade the schema to this code's version (idempotent,
        safe from several processes at once); returns the version found
        before. Works before ``open()``, which may need the schema."""

    @abstractmethod
    async def schema_status(self) -> SchemaStatus:
        """The stored schema's version, read without changing anything.
        Works before ``open()``, which may upgrade the schema (SQLite) or
        refuse an old one (PostgreSQL with ``migrate=false``)."""

    @abstractmethod
    async def is_alive(self) -> bool:
        ...

    def problem(self) -> str | None:
        """Why the storage is not alive, when the driver knows more than
        "unreachable" (a full disk); None otherwise."""
        return None

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """Details for the admin health report."""

    @abstractmethod
    async def gc(self) -> GcResult:
        """Remove expired messages, claims and subscriptions (with their
        deliveries) and dead deliveries past the retention; returns how
        many records of each kind went."""

    async def stored_secret(self, name: str) -> bytes:
        """A random key kept with the data under ``name`` (letters, digits
        and "-"): 64 hex digits, made by the first caller in any process and
        read back by every later one, so every worker and node of a
        deployment signs alike. Made atomically: when two processes race,
        one write wins and both return it. Pre-signed URLs use it when no
        ``auth.secret_key`` is configured."""
        raise NotImplementedError(f"the {self.name} storage keeps no secrets")

    def watch(self, project: str, queue: str) -> AbstractAsyncContextManager[PostWatch]:
        """Watch a queue for posts by any process on this backend.

        Enter it before reading, so a post that lands between the read and
        the wait still wakes the waiter:

            async with driver.watch(project, queue) as watch:
                page = await read()
                if not page and await watch.wait(timeout):
                    page = await read()

        Woken by the backend's own signal (for SQLite the commit, and a
        notice over the file's bus from other processes; pub/sub for Redis,
        LISTEN/NOTIFY for PostgreSQL), never by polling.
        """
        raise NotImplementedError(f"{self.name} cannot watch queues yet")

    async def publish(self, channel: str, message: bytes) -> int | None:
        """Hand ``message`` to every listener of ``channel`` on this backend
        (in any process: Redis pub/sub, PostgreSQL LISTEN/NOTIFY; Unix sockets
        between the processes on an SQLite file, storage/sqlite/bus.py). At
        most once and unordered: a listener that is reconnecting misses it,
        so callers needing proof of receipt must ask for an answer. Returns
        how many listeners got it when the backend can tell (0: nobody
        listens), None when it cannot.

        ``channel`` is a short name of letters, digits, ``.``, ``_`` and
        ``-``; ``message`` may be as large as a message post.
        """
        raise NotImplementedError(f"{self.name} cannot publish yet")

    def listen(self, channel: str, receive: Receive) -> AbstractAsyncContextManager[None]:
        """Call ``receive(message)`` for each message published on
        ``channel`` while the context is entered; listening is active once
        ``__aenter__`` returns (ServiceUnavailable if the backend cannot be
        reached). A lost connection is re-established in the background;
        what was published meanwhile is lost (see ``publish``)."""
        raise NotImplementedError(f"{self.name} cannot listen yet")


# The records (storage/records.py) are part of the interface: importable from here.
__all__ = [
    "Capability", "Claim", "ClaimRequest", "ClaimResult", "DeadLetterPolicy", "Delivery",
    "DeliveryKind", "DeliveryStatus", "GcResult", "Message", "MessageStat", "NewMessage",
    "NewSubscription", "QueueFilters", "QueueRecord", "QueueStats", "SchemaStatus",
    "Subscription",
]
