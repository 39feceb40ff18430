"""The values that cross the storage interface (storage/base.py): what
the operations hand a driver and what a driver answers, each a frozen
record, with no behaviour of a backend."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(slots=True, frozen=True)
class GcResult:
    """What one ``DataDriver.gc`` pass removed, by kind (the metric
    ``tidings_gc_removed_total`` has one ``kind`` label per field).

    ``deliveries`` counts both those removed with an expired subscription
    and dead ones older than the retention. ``claims`` counts expired
    claims (their messages are released, not removed).
    """

    messages: int = 0
    claims: int = 0
    subscriptions: int = 0
    deliveries: int = 0

    KINDS: ClassVar[tuple[str, ...]] = ("messages", "claims", "subscriptions", "deliveries")

    @property
    def total(self) -> int:
        return self.messages + self.claims + self.subscriptions + self.deliveries

    def __add__(self, other: GcResult) -> GcResult:
        # Summed over batches (SQLite, PostgreSQL), queues (Redis), pools.
        if not isinstance(other, GcResult):
            return NotImplemented
        return GcResult(self.messages + other.messages, self.claims + other.claims,
                        self.subscriptions + other.subscriptions,
                        self.deliveries + other.deliveries)

    def by_kind(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in self.KINDS}

    def __str__(self) -> str:
        return ", ".join(f"{kind} {count}" for kind, count in self.by_kind().items())


class Capability(enum.Enum):
    FIFO = "fifo"
    CLAIMS = "claims"
    DURABILITY = "durability"
    AT_LEAST_ONCE = "at_least_once"
    HIGH_THROUGHPUT = "high_throughput"


@dataclass(slots=True, frozen=True)
class NewMessage:
    body: Any
    ttl: int
    delay: int = 0


@dataclass(slots=True)
class Message:
    id: str
    ttl: int
    age: int
    body: Any
    # Set only while a claim on the message is active.
    claim_id: str | None = None
    claim_count: int = 0


@dataclass(slots=True)
class QueueRecord:
    name: str
    metadata: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class QueueFilters:
    """Queue listing filters: a substring of the name, and metadata values
    that must equal the given strings."""

    name: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class MessageStat:
    id: str
    age: int
    created: float


@dataclass(slots=True)
class QueueStats:
    claimed: int = 0
    # Unclaimed live messages, delayed ones included (as Zaqar counts them).
    free: int = 0
    oldest: MessageStat | None = None
    newest: MessageStat | None = None

    @property
    def total(self) -> int:
        return self.claimed + self.free


@dataclass(slots=True)
class Claim:
    id: str
    ttl: int
    grace: int
    age: int
    messages: list[Message] = field(default_factory=list)


@dataclass(slots=True)
class ClaimResult:
    """What ``ClaimController.create`` did.

    ``claim_id`` and ``messages`` are the new claim (None and [] when
    nothing was claimable). ``dead_lettered`` is how many messages this
    call moved to the dead letter queue: set even when nothing was claimed
    (a claim may find only messages to move), and only for moves that were
    committed, since the driver returns after its write is.
    """

    claim_id: str | None
    messages: list[Message] = field(default_factory=list)
    dead_lettered: int = 0


# Not frozen: a frozen dataclass's __init__ costs twice as much, on every claim.
@dataclass(slots=True)
class ClaimRequest:
    """A claim to make, as ``ClaimController.create`` hands it to a driver:
    the caller's ttl, grace, limit and dead letter policy, with the claim's
    id and times computed once from the clock. Drivers only read it."""

    now: float
    claim_id: str
    ttl: int
    grace: int
    limit: int
    # When the claim ends, and how long its messages live at least.
    expires: float
    keep_until: float
    dead_letter: DeadLetterPolicy | None


@dataclass(slots=True, frozen=True)
class DeadLetterPolicy:
    """Messages claimed ``max_claim_count`` times move to ``queue``."""

    max_claim_count: int
    queue: str | None
    ttl: int | None


@dataclass(slots=True, frozen=True)
class NewSubscription:
    subscriber: str
    ttl: int
    options: dict[str, Any]
    # False while the subscriber has yet to confirm (require_confirmation).
    confirmed: bool = True


@dataclass(slots=True)
class Subscription:
    id: str
    queue: str
    subscriber: str
    ttl: int
    age: int
    options: dict[str, Any]
    confirmed: bool


class DeliveryKind(enum.Enum):
    MESSAGE = "message"
    CONFIRMATION = "confirmation"


class DeliveryStatus(enum.Enum):
    PENDING = "pending"
    DEAD = "dead"


@dataclass(slots=True)
class Delivery:
    """One notification owed to one subscriber: an outbox record.

    A message delivery carries a copy of the message as posted, so it can
    be sent even after the message was claimed and deleted.
    """

    id: str
    project: str
    queue: str
    subscription_id: str
    subscriber: str
    options: dict[str, Any]
    kind: DeliveryKind
    # For MESSAGE: {"id", "body", "ttl"}; for CONFIRMATION: what the
    # operation layer enqueued (the signed confirmation URL and so on).
    payload: dict[str, Any]
    attempts: int
    created: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    last_error: str | None = None


@dataclass(slots=True, frozen=True)
class SchemaStatus:
    """A backend's stored schema version against the one this code needs;
    both None for a backend that keeps no schema."""

    found: int | None
    needed: int | None

    @property
    def problem(self) -> str | None:
        """What is wrong with the stored schema and what to do, in one
        sentence; None when it is the version this code needs."""
        if self.found == self.needed or self.found is None or self.needed is None:
            return None
        if self.found < self.needed:
            return (f"the schema is version {self.found}, outdated: this Tidings needs "
                    f"{self.needed}; run `tidings migrate`")
        return f"the schema is version {self.found}, newer than this Tidings ({self.needed})"
