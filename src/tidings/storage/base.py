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

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


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


@dataclass(slots=True, frozen=True)
class DeadLetterPolicy:
    """Messages claimed ``max_claim_count`` times move to ``queue``."""

    max_claim_count: int
    queue: str | None
    ttl: int | None


class QueueController(ABC):
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
        """Delete the queue with its messages and claims; idempotent."""

    @abstractmethod
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

    @abstractmethod
    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        """How many queues of the project match ``filters``."""

    @abstractmethod
    async def stats(self, project: str, name: str) -> QueueStats:
        """Message counts; zeros for a queue that does not exist."""

    @abstractmethod
    async def purge_messages(self, project: str, name: str) -> None:
        """Delete every message and claim of the queue, keep the queue."""


class MessageController(ABC):
    @abstractmethod
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        """Append all messages or none; creates the queue if needed."""

    @abstractmethod
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

    @abstractmethod
    async def get(self, project: str, queue: str, message_id: str) -> Message:
        """One live message of this queue; raises MessageDoesNotExist."""

    @abstractmethod
    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> list[Message]:
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
    async def pop(self, project: str, queue: str, limit: int) -> list[Message]:
        """Remove and return up to ``limit`` available, unclaimed messages."""


class ClaimController(ABC):
    @abstractmethod
    async def create(
        self,
        project: str,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: DeadLetterPolicy | None,
    ) -> tuple[str | None, list[Message]]:
        """Claim up to ``limit`` messages in FIFO order.

        Messages already claimed ``dead_letter.max_claim_count`` times are
        moved to the dead letter queue instead (or dropped when it has no
        name). Returns (None, []) when nothing was claimable. A claimed
        message lives at least until the claim expires plus ``grace``.
        """

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


class DataDriver(ABC):
    """One backend: its controllers plus life-cycle and health."""

    name: str
    capabilities: frozenset[Capability]
    queues: QueueController
    messages: MessageController
    claims: ClaimController

    @abstractmethod
    async def open(self) -> None:
        """Connect and prepare the schema; called once before use."""

    @abstractmethod
    async def close(self) -> None:
        ...

    @abstractmethod
    async def is_alive(self) -> bool:
        ...

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """Details for the admin health report."""

    @abstractmethod
    async def gc(self) -> int:
        """Remove expired messages and claims; returns how many rows went."""
