"""The SQS actions on queues: create, find, list, attributes, purge,
tags, dead letter sources and the message move task (the redrive). Each
reads its parameters, calls ``tidings.api`` and shapes the answer."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from typing import Any

from tidings import errors
from tidings.api import queues, redrive
from tidings.transport.sqs import attributes as attrs
from tidings.transport.sqs.calls import (
    Call,
    existing,
    integer,
    queue_of,
    required_string,
    string,
    string_list,
)
from tidings.transport.sqs.errors import (
    SqsError,
    invalid_parameter,
    missing_parameter,
    queue_does_not_exist,
)

MAX_LIST = 1000
MAX_TAGS = 50
_SQS_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


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


def _task_handle(source: str) -> str:
    # Opaque to clients; names the queue whose metadata keeps the task.
    token = f"{uuid.uuid4()}\n{source}".encode()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _source_of_handle(handle: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    _, _, source = text.partition("\n")
    return source or None


async def start_message_move_task(call: Call) -> dict[str, Any]:
    """The redrive of a dead letter queue, done before the answer: the
    task handle names a task that has already finished, which
    ListMessageMoveTasks then shows (the last one of each queue is kept in
    its metadata)."""
    source_arn = required_string(call, "SourceArn")
    source = attrs.queue_of_arn(source_arn, call.project, "SourceArn")
    target_arn = string(call, "DestinationArn")
    target = (attrs.queue_of_arn(target_arn, call.project, "DestinationArn")
              if target_arn is not None else None)
    # A rate limit SQS applies to its background task; a redrive here is
    # one request, so there is nothing to pace.
    rate = integer(call.params, "MaxNumberOfMessagesPerSecond", 1, 500)
    for name in (source, target):
        if name is not None:
            await _move_task_queue(call, name)
    started = int(time.time() * 1000)
    moved = await redrive.redrive(call.ctx, source, to=target)
    task: dict[str, Any] = {
        "TaskHandle": _task_handle(source), "Status": "COMPLETED", "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": moved["moved"],
        "ApproximateNumberOfMessagesToMove": moved["moved"], "StartedTimestamp": started}
    if target_arn is not None:
        task["DestinationArn"] = target_arn
    if rate is not None:
        task["MaxNumberOfMessagesPerSecond"] = rate
    await _patch(call, source, {attrs.MOVE_TASK: task})
    return {"TaskHandle": task["TaskHandle"]}


async def _move_task_queue(call: Call, name: str) -> dict[str, Any]:
    try:
        return await existing(call, name)
    except SqsError:
        raise SqsError("ResourceNotFoundException",
                       f"The resource {call.arn_of(name)} does not exist.") from None


async def list_message_move_tasks(call: Call) -> dict[str, Any]:
    source = attrs.queue_of_arn(required_string(call, "SourceArn"), call.project, "SourceArn")
    integer(call.params, "MaxResults", 1, 10)
    task = (await _move_task_queue(call, source)).get(attrs.MOVE_TASK)
    return {"Results": [task] if isinstance(task, dict) else []}


async def cancel_message_move_task(call: Call) -> dict[str, Any]:
    """Tasks finish within StartMessageMoveTask: none is ever running."""
    handle = required_string(call, "TaskHandle")
    source = _source_of_handle(handle)
    if source is not None:
        task = (await _move_task_queue(call, source)).get(attrs.MOVE_TASK)
        if isinstance(task, dict) and task.get("TaskHandle") == handle:
            raise SqsError("UnsupportedOperation",
                           "The task has already completed: it cannot be cancelled.")
    raise SqsError("ResourceNotFoundException", f"No running task has the handle {handle}.")
