"""The SQS actions: each reads its parameters, calls the operations of
``tidings.api`` and shapes their results as SQS answers. None decides
anything about queues or messages itself.

Visibility timeouts are claims. Each message a ReceiveMessage returns is
claimed on its own (a claim of one message), so that changing or ending
the visibility of one message leaves the others received with it alone, as
in SQS. Tidings' claims last at least ``limits.min_claim_ttl`` (60 s): a
shorter visibility timeout is served as that minimum, except 0, which
releases the message at once (ChangeMessageVisibility to 0, or a receive
with VisibilityTimeout 0).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from tidings import errors
from tidings.api import claims, messages, queues, redrive
from tidings.api.context import Context
from tidings.transport.sqs import attributes as attrs
from tidings.transport.sqs import messages as sqs_messages
from tidings.transport.sqs import receipts
from tidings.transport.sqs.errors import (
    SqsError,
    from_domain,
    invalid_parameter,
    missing_parameter,
    queue_does_not_exist,
)

MAX_BATCH = 10
MAX_BATCH_BYTES = 256 * 1024
MAX_LIST = 1000
MAX_TAGS = 50
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_SQS_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(slots=True)
class Call:
    """One SQS request, once authenticated."""

    ctx: Context
    params: dict[str, Any]
    # scheme://host[:port] of the request: queue URLs are built on it.
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


# --- parameters ---------------------------------------------------------------


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


def string_map(call: Call, name: str) -> dict[str, str] | None:
    value = call.params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid_parameter(f"Value for parameter {name} must be a map of strings.")
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


# --- queues -------------------------------------------------------------------


def tags_of(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise invalid_parameter("Tags must be a map of strings to strings.")
    for key, tag in value.items():
        if not 1 <= len(key) <= 128 or len(tag) > 256:
            raise invalid_parameter(f"Tag {key!r} is invalid: keys have 1 to 128 characters, "
                                    "values at most 256.")
    return value


def _check_new_name(name: str) -> None:
    if name.endswith(".fifo"):
        raise SqsError("UnsupportedOperation", "FIFO queues are not supported.")
    if not _SQS_QUEUE_NAME.match(name):
        raise invalid_parameter("Can only include alphanumeric characters, hyphens, or "
                                "underscores. 1 to 80 in length")


async def _dead_letter_target(call: Call, changes: dict[str, Any]) -> None:
    dlq = changes.get(attrs.DEAD_LETTER_QUEUE)
    if dlq is not None:
        try:
            await existing(call, dlq)
        except SqsError:
            raise invalid_parameter("Value for parameter RedrivePolicy is invalid. Reason: "
                                    "Dead letter target does not exist.") from None


async def create_queue(call: Call) -> dict[str, Any]:
    name = required_string(call, "QueueName")
    _check_new_name(name)
    changes = attrs.to_metadata(call.params.get("Attributes"), call.ctx.limits, call.project,
                                creating=True)
    await _dead_letter_target(call, changes)
    metadata = {key: value for key, value in changes.items() if value is not None}
    tags = call.params.get("tags")
    if tags is not None:
        metadata[attrs.TAGS] = tags_of(tags)
    try:
        stored: dict[str, Any] | None = await queues.existing_metadata(call.ctx, name)
    except errors.QueueDoesNotExist:
        stored = None
    if stored is None:
        await queues.create(call.ctx, name, metadata)
    else:
        # SQS: creating an existing queue is fine with the same attributes,
        # an error with different ones.
        for key, value in changes.items():
            if stored.get(key) != value:
                raise SqsError("QueueNameExists", "A queue already exists with the same name "
                               "and a different value for an attribute.")
    return {"QueueUrl": call.url_of(name)}


async def get_queue_url(call: Call) -> dict[str, Any]:
    name = required_string(call, "QueueName")
    owner = string(call, "QueueOwnerAWSAccountId")
    if owner is not None and owner != call.project:
        raise queue_does_not_exist()
    await existing(call, name)
    return {"QueueUrl": call.url_of(name)}


async def _names(call: Call, prefix: str, wanted: int, marker: str | None,
                 filters: dict[str, str]) -> tuple[list[str], str | None]:
    """Up to ``wanted`` queue names after ``marker`` that start with
    ``prefix``, and the marker of what follows (None at the end)."""
    page_size = call.ctx.limits.max_queues_per_page
    found: list[str] = []
    while len(found) < wanted:
        page = await queues.list_queues(call.ctx, marker=marker, limit=page_size,
                                        detailed=False, name=prefix or None,
                                        with_count=False, metadata_filters=filters)
        names = [q["name"] for q in page["queues"]]
        for index, name in enumerate(names):
            marker = name
            if name.startswith(prefix):
                found.append(name)
                if len(found) == wanted:
                    more = index + 1 < len(names) or len(names) == page_size
                    return found, marker if more else None
        if len(names) < page_size:
            return found, None
    return found, marker


async def _listing(call: Call, filters: dict[str, str], key: str) -> dict[str, Any]:
    prefix = string(call, "QueueNamePrefix") or ""
    limit = integer(call.params, "MaxResults", 1, MAX_LIST)
    token = string(call, "NextToken")
    if token is not None and limit is None:
        raise invalid_parameter("MaxResults is required when NextToken is given.")
    names, marker = await _names(call, prefix, limit or MAX_LIST, token, filters)
    # SQS leaves out an empty QueueUrls; queueUrls is required in its answer.
    result: dict[str, Any] = {key: [call.url_of(name) for name in names]
                              } if names or key == "queueUrls" else {}
    if limit is not None and marker is not None:
        result["NextToken"] = marker
    return result


async def list_queues(call: Call) -> dict[str, Any]:
    return await _listing(call, {}, "QueueUrls")


async def list_dead_letter_source_queues(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    await existing(call, name)
    return await _listing(call, {attrs.DEAD_LETTER_QUEUE: name}, "queueUrls")


async def delete_queue(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    await existing(call, name)
    await queues.delete(call.ctx, name)
    return {}


async def get_queue_attributes(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    names = attrs.check_names(call.params.get("AttributeNames"))
    metadata = await existing(call, name)
    counts = (await queues.stats(call.ctx, name))["messages"] if names else {}
    dlq = metadata.get(attrs.DEAD_LETTER_QUEUE)
    values = attrs.from_metadata(metadata, counts, names, call.ctx.limits, call.arn_of(name),
                                 call.arn_of(dlq) if isinstance(dlq, str) else None)
    return {"Attributes": values} if values else {}


async def _patch(call: Call, name: str, changes: dict[str, Any]) -> None:
    patch = [{"op": "remove", "path": f"/metadata/{key}"} if value is None
             else {"op": "add", "path": f"/metadata/{key}", "value": value}
             for key, value in changes.items()]
    await queues.patch(call.ctx, name, patch)


async def set_queue_attributes(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    attributes = call.params.get("Attributes")
    if attributes is None:
        raise missing_parameter("Attributes")
    changes = attrs.to_metadata(attributes, call.ctx.limits, call.project, creating=False)
    await existing(call, name)
    await _dead_letter_target(call, changes)
    await _patch(call, name, changes)
    return {}


async def purge_queue(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    await existing(call, name)
    await queues.purge(call.ctx, name, {"resource_types": ["messages"]})
    return {}


async def tag_queue(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    tags = call.params.get("Tags")
    if tags is None:
        raise missing_parameter("Tags")
    metadata = await existing(call, name)
    merged = {**metadata.get(attrs.TAGS, {}), **tags_of(tags)}
    if len(merged) > MAX_TAGS:
        raise invalid_parameter(f"Too many tags: a queue may have at most {MAX_TAGS}.")
    await _patch(call, name, {attrs.TAGS: merged})
    return {}


async def untag_queue(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    keys = string_list(call, "TagKeys")
    if keys is None:
        raise missing_parameter("TagKeys")
    metadata = await existing(call, name)
    tags = {k: v for k, v in metadata.get(attrs.TAGS, {}).items() if k not in keys}
    await _patch(call, name, {attrs.TAGS: tags or None})
    return {}


async def list_queue_tags(call: Call) -> dict[str, Any]:
    metadata = await existing(call, queue_of(call))
    tags = metadata.get(attrs.TAGS) or {}
    return {"Tags": tags} if tags else {}


async def start_message_move_task(call: Call) -> dict[str, Any]:
    """The redrive of a dead letter queue, done before the answer: the
    task handle names a task that has already finished."""
    source = attrs.queue_of_arn(required_string(call, "SourceArn"), call.project,
                                "SourceArn")
    target_arn = string(call, "DestinationArn")
    target = (attrs.queue_of_arn(target_arn, call.project, "DestinationArn")
              if target_arn is not None else None)
    # A rate limit SQS applies to its background task; a redrive here is
    # one request, so there is nothing to pace.
    integer(call.params, "MaxNumberOfMessagesPerSecond", 1, 500)
    for name in (source, target):
        if name is not None:
            try:
                await existing(call, name)
            except SqsError:
                raise SqsError("ResourceNotFoundException",
                               f"The resource {call.arn_of(name)} does not exist.") from None
    await redrive.redrive(call.ctx, source, to=target)
    return {"TaskHandle": str(uuid.uuid4())}


# --- messages -----------------------------------------------------------------


def _outgoing(entry: dict[str, Any], limits: Any
              ) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the Zaqar message to post, the SQS result fields, the size SQS
    counts) of one message of a SendMessage or of a SendMessageBatch entry."""
    if "MessageBody" not in entry:
        raise missing_parameter("MessageBody")
    body = sqs_messages.check_body(entry["MessageBody"])
    attributes = sqs_messages.check_attributes(entry.get("MessageAttributes"))
    if entry.get("MessageSystemAttributes"):
        raise invalid_parameter("MessageSystemAttributes are not supported.")
    for fifo_only in ("MessageGroupId", "MessageDeduplicationId"):
        if entry.get(fifo_only) is not None:
            raise invalid_parameter(f"The request includes a parameter that is not valid for "
                                    f"this queue type: {fifo_only}.")
    message: dict[str, Any] = {"body": sqs_messages.stored_body(body, attributes)}
    delay = integer(entry, "DelaySeconds", 0, limits.max_message_delay)
    if delay is not None:
        message["delay"] = delay
    result = {"MD5OfMessageBody": sqs_messages.md5_of_body(body)}
    digest = sqs_messages.md5_of_attributes(attributes)
    if digest is not None:
        result["MD5OfMessageAttributes"] = digest
    return message, result, sqs_messages.size_of(body, attributes)


async def _post(call: Call, name: str, outgoing: list[dict[str, Any]], size: int) -> list[str]:
    try:
        posted = await messages.post(call.ctx, name, {"messages": outgoing}, size)
    except errors.ValidationFailed as exc:
        if "too large" in exc.description:
            raise invalid_parameter("One or more parameters are invalid. Reason: Message must "
                                    "be shorter than the queue's MaximumMessageSize.") from None
        raise
    return messages.posted_ids(posted)


async def send_message(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    message, result, size = _outgoing(call.params, call.ctx.limits)
    await existing(call, name)
    (message_id,) = await _post(call, name, [message], size)
    return {"MessageId": message_id, **result}


async def send_message_batch(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    entries = batch_entries(call)
    await existing(call, name)
    ready: list[tuple[str, dict[str, Any], dict[str, Any], int]] = []
    failed = []
    for entry in entries:
        try:
            ready.append((entry["Id"], *_outgoing(entry, call.ctx.limits)))
        except SqsError as exc:
            failed.append(failure(entry["Id"], exc))
    total = sum(size for *_, size in ready)
    if total > MAX_BATCH_BYTES:
        raise SqsError("BatchRequestTooLong", f"Batch requests cannot be longer than "
                       f"{MAX_BATCH_BYTES} bytes. You have sent {total} bytes.")
    done = []
    if ready:
        # One post: the valid entries are stored all together or not at all.
        # MaximumMessageSize is per message: the largest one is checked.
        ids = await _post(call, name, [message for _, message, _, _ in ready],
                          max(size for *_, size in ready))
        for (entry_id, _, result, _), message_id in zip(ready, ids, strict=True):
            done.append({"Id": entry_id, "MessageId": message_id, **result})
    return {"Successful": done, "Failed": failed}


SYSTEM_ATTRIBUTES = ("SentTimestamp", "ApproximateReceiveCount")


def _received(call: Call, name: str, message: dict[str, Any], claim_id: str,
              system_names: set[str], attribute_names: list[str] | None, now: float
              ) -> dict[str, Any]:
    body, attributes = sqs_messages.read_body(message["body"])
    shown: dict[str, Any] = {
        "MessageId": message["id"],
        "ReceiptHandle": receipts.issue(call.receipt_key, call.project, name, message["id"],
                                        claim_id),
        "MD5OfBody": sqs_messages.md5_of_body(body),
        "Body": body,
    }
    system = {
        # Tidings keeps a message's age in whole seconds.
        "SentTimestamp": str(int((now - message["age"]) * 1000)),
        "ApproximateReceiveCount": str(message["claim_count"]),
    }
    wanted = SYSTEM_ATTRIBUTES if "All" in system_names else [
        n for n in SYSTEM_ATTRIBUTES if n in system_names]
    if wanted:
        shown["Attributes"] = {n: system[n] for n in wanted}
    selected = sqs_messages.select_attributes(attributes, attribute_names)
    if selected:
        shown["MessageAttributes"] = selected
        shown["MD5OfMessageAttributes"] = sqs_messages.md5_of_attributes(selected)
    return shown


async def receive_message(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    limits = call.ctx.limits
    count = integer(call.params, "MaxNumberOfMessages", 1, MAX_BATCH) or 1
    visibility = integer(call.params, "VisibilityTimeout", 0, attrs.MAX_VISIBILITY)
    wait = integer(call.params, "WaitTimeSeconds", 0, attrs.MAX_RECEIVE_WAIT)
    system_names = set(string_list(call, "MessageSystemAttributeNames") or [])
    system_names |= set(string_list(call, "AttributeNames") or [])
    attribute_names = string_list(call, "MessageAttributeNames")
    metadata = await existing(call, name)
    visibility = attrs.visibility_of(metadata, visibility, limits)
    wait = attrs.receive_wait_of(metadata, wait)
    claim = {"ttl": min(max(visibility, limits.min_claim_ttl), limits.max_claim_ttl),
             "grace": limits.default_claim_grace}
    received = []
    while len(received) < count:
        # Only the first claim waits: once one message came, SQS answers
        # with what else is there now.
        result = await claims.create(call.ctx, name, claim, 1,
                                     wait=wait if not received and wait else None)
        if result is None:
            break
        received += [(m, result["claim_id"]) for m in result["messages"]]
        if not result["messages"]:
            break
    now = time.time()
    shown = [_received(call, name, m, claim_id, system_names, attribute_names, now)
             for m, claim_id in received]
    if visibility == 0:
        for _, claim_id in received:
            await claims.delete(call.ctx, name, claim_id)
    return {"Messages": shown} if shown else {}


async def _delete(call: Call, name: str, handle: Any) -> dict[str, Any]:
    receipt = receipts.read(call.receipt_key, call.project, name, handle)
    try:
        await messages.delete(call.ctx, name, receipt.message_id, receipt.claim_id)
    except errors.MessageNotClaimed:
        # Its visibility timeout ran out and nobody received it since: the
        # last receiver may still delete it, as in SQS.
        try:
            await messages.delete(call.ctx, name, receipt.message_id, None)
        except errors.MessageIsClaimed:
            pass
    except errors.ClaimDoesNotExist:
        # Received again by someone else since: SQS answers success and
        # leaves the message to its new receiver.
        pass
    return {}


async def delete_message(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    handle = required_string(call, "ReceiptHandle")
    await existing(call, name)
    return await _delete(call, name, handle)


async def delete_message_batch(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    entries = batch_entries(call)
    await existing(call, name)

    async def act(entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("ReceiptHandle") is None:
            raise missing_parameter("ReceiptHandle")
        return await _delete(call, name, entry["ReceiptHandle"])

    return await each_entry(entries, act)


async def _change_visibility(call: Call, name: str, handle: Any, timeout: int | None
                             ) -> dict[str, Any]:
    if timeout is None:
        raise missing_parameter("VisibilityTimeout")
    receipt = receipts.read(call.receipt_key, call.project, name, handle)
    limits = call.ctx.limits
    try:
        claim = await claims.get(call.ctx, name, receipt.claim_id)
        if not any(m["id"] == receipt.message_id for m in claim["messages"]):
            # Deleted since: its claim lives on, empty.
            raise errors.ClaimNotFound(receipt.claim_id)
        if timeout == 0:
            await claims.delete(call.ctx, name, receipt.claim_id)
        else:
            await claims.update(call.ctx, name, receipt.claim_id, {
                "ttl": min(max(timeout, limits.min_claim_ttl), limits.max_claim_ttl),
                "grace": limits.default_claim_grace})
    except errors.ClaimNotFound:
        raise SqsError("MessageNotInflight", "The message referred to isn't in flight.") from None
    return {}


async def change_message_visibility(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    handle = required_string(call, "ReceiptHandle")
    timeout = integer(call.params, "VisibilityTimeout", 0, attrs.MAX_VISIBILITY)
    await existing(call, name)
    return await _change_visibility(call, name, handle, timeout)


async def change_message_visibility_batch(call: Call) -> dict[str, Any]:
    name = queue_of(call)
    entries = batch_entries(call)
    await existing(call, name)

    async def act(entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("ReceiptHandle") is None:
            raise missing_parameter("ReceiptHandle")
        timeout = integer(entry, "VisibilityTimeout", 0, attrs.MAX_VISIBILITY)
        return await _change_visibility(call, name, entry["ReceiptHandle"], timeout)

    return await each_entry(entries, act)


Action = Callable[[Call], Awaitable[dict[str, Any]]]

ACTIONS: dict[str, Action] = {
    "CreateQueue": create_queue,
    "GetQueueUrl": get_queue_url,
    "ListQueues": list_queues,
    "DeleteQueue": delete_queue,
    "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes,
    "PurgeQueue": purge_queue,
    "SendMessage": send_message,
    "SendMessageBatch": send_message_batch,
    "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message,
    "DeleteMessageBatch": delete_message_batch,
    "ChangeMessageVisibility": change_message_visibility,
    "ChangeMessageVisibilityBatch": change_message_visibility_batch,
    "ListDeadLetterSourceQueues": list_dead_letter_source_queues,
    "StartMessageMoveTask": start_message_move_task,
    "TagQueue": tag_queue,
    "UntagQueue": untag_queue,
    "ListQueueTags": list_queue_tags,
}
# Actions of SQS's API that have no Tidings counterpart.
UNSUPPORTED = frozenset({"AddPermission", "RemovePermission", "CancelMessageMoveTask",
                         "ListMessageMoveTasks"})
