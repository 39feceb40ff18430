"""The bench's settings: one picklable object shared by parent and workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tidings.bench.target import Target

# The order phases run in, whatever order --roles lists them. The ping
# ceiling comes first so every later figure can be compared with it; the
# observer reads before the consumers, because consumers delete what the
# observer would otherwise page through.
ROLE_ORDER = ("ping", "producer", "sqs_producer", "observer", "consumer", "sqs_consumer")

# The roles run when --roles is not given: the Zaqar API's.
DEFAULT_ROLES = ("ping", "producer", "observer", "consumer")

# Roles that send through the SQS API, whose batches hold at most 10.
SQS_ROLES = ("sqs_producer", "sqs_consumer")

# Roles that post messages, and roles that need messages already in the queues.
WRITING_ROLES = ("producer", "sqs_producer")
READING_ROLES = ("observer", "consumer", "sqs_consumer")

# Used when --prefill is not given and no ping ceiling is known to size it.
DEFAULT_PREFILL = 20_000


@dataclass(frozen=True)
class BenchOptions:
    target: Target
    project: str = "bench"
    processes: int = 1
    workers: int = 2
    time: float = 5.0
    warmup: float = 1.0
    roles: tuple[str, ...] = DEFAULT_ROLES
    message_size: int = 100
    messages_per_post: int = 1
    messages_per_claim: int = 10
    observer_limit: int = 10
    queues: int = 1
    queue_prefix: str = "bench"
    prefill: int | None = None  # None: sized automatically (see runner)
    keep_queues: bool = False
    bulk_delete: bool = False  # consumers delete a claimed batch in one request
    message_ttl: int = 300
    claim_ttl: int = 300
    claim_grace: int = 60

    def queue_name(self, index: int) -> str:
        return f"{self.queue_prefix}-{index % self.queues}"

    def queue_names(self) -> list[str]:
        return [self.queue_name(i) for i in range(self.queues)]

    def describe(self) -> dict[str, Any]:
        """The settings as plain data, for the JSON report."""
        data = asdict(self)
        del data["target"]
        return {"url": self.target.url, **data, "roles": list(self.roles)}
