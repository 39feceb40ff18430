"""One SQS request once authenticated (``Call``), and reading its
parameters: the checks every action shares (types, ranges, the queue a
QueueUrl names, batch entries)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from tidings import errors
from tidings.api import queues
from tidings.api.context import Context
from tidings.transport.sqs import attributes as attrs
from tidings.transport.sqs.errors import (
    SqsError,
    from_domain,
    invalid_parameter,
    missing_parameter,
    queue_does_not_exist,
)

MAX_BATCH = 10
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(slots=True)
class Call:
    """One SQS request, once authenticated."""

    ctx: Context
    params: dict[str, Any]
    # scheme://host[:port] the client reached (behind a proxy, from its
    # X-Forwarded-Proto and Host): queue URLs are built on it, and kombu
    # sends a queue's requests to its URL.
    base_url: str
    # The region of the request's signature: queue ARNs name it.
    region: str
    # The key receipt handles are signed with.
    receipt_key: bytes

    @property
    def project(self) -> str:
        return self.ctx.project

    def url_of(self, queue: str) -> str:
        return f"{self.base_url}/{quote(self.project, safe='')}/{queue}"

    def arn_of(self, queue: str) -> str:
        return attrs.arn(self.region, self.project, queue)


def string(call: Call, name: str) -> str | None:
    value = call.params.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid_parameter(f"Value for parameter {name} must be a string.")
    return value


def required_string(call: Call, name: str) -> str:
    value = string(call, name)
    if value is None:
        raise missing_parameter(name)
    return value


def integer(params: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_parameter(f"Value {value} for parameter {name} is invalid. Reason: "
                                f"Must be between {low} and {high}, if provided.")
    return value


def string_list(call: Call, name: str) -> list[str] | None:
    value = call.params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_parameter(f"Value for parameter {name} must be a list of strings.")
    return value


def queue_of(call: Call) -> str:
    """The queue a QueueUrl names: ``<scheme>://<host>/<account>/<queue>``,
    the account being the caller's project."""
    url = required_string(call, "QueueUrl")
    parts = urlsplit(url).path.strip("/").split("/") if url else []
    if len(parts) != 2 or not all(parts):
        raise SqsError("InvalidAddress", f"The address {url} is not valid for this endpoint.")
    account, name = parts
    if account != call.project and account != quote(call.project, safe=""):
        # Another project's queue does not exist for this caller.
        raise queue_does_not_exist()
    return name


async def existing(call: Call, name: str) -> dict[str, Any]:
    """The metadata of a queue of the caller's; QueueDoesNotExist if it has
    none of that name."""
    try:
        return await queues.existing_metadata(call.ctx, name)
    except (errors.InvalidQueueName, errors.QueueDoesNotExist):
        raise queue_does_not_exist() from None


def batch_entries(call: Call) -> list[dict[str, Any]]:
    """The Entries of a batch action, checked as SQS checks them before any
    entry is acted on."""
    entries = call.params.get("Entries")
    if entries is None:
        raise missing_parameter("Entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid_parameter("Entries must be a list of structures.")
    if not entries:
        raise SqsError("EmptyBatchRequest", "There should be at least one entry in the request.")
    if len(entries) > MAX_BATCH:
        raise SqsError("TooManyEntriesInBatchRequest",
                       f"Maximum number of entries per request are {MAX_BATCH}. You have sent "
                       f"{len(entries)}.")
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ID.match(entry_id):
            raise SqsError("InvalidBatchEntryId",
                           "A batch entry id can only contain alphanumeric characters, hyphens "
                           "and underscores. It can be at most 80 letters long.")
        if entry_id in seen:
            raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def failure(entry_id: str, error: SqsError) -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": error.kind.sender, "Code": error.kind.code,
            "Message": error.message}


async def each_entry(entries: list[dict[str, Any]],
                     act: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
                     ) -> dict[str, Any]:
    """Run ``act`` on every entry of a batch: {Successful, Failed}."""
    done, failed = [], []
    for entry in entries:
        try:
            done.append({"Id": entry["Id"], **await act(entry)})
        except SqsError as exc:
            failed.append(failure(entry["Id"], exc))
        except errors.TidingsError as exc:
            failed.append(failure(entry["Id"], from_domain(exc)))
    return {"Successful": done, "Failed": failed}
