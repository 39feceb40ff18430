"""The SQS actions on messages: send, receive, delete and change the
visibility, one or a batch. Each reads its parameters, calls the
operations of ``tidings.api`` and shapes their results as SQS answers.

Visibility timeouts are claims. Each message a ReceiveMessage returns is
claimed on its own (a claim of one message), so that changing or ending
the visibility of one message leaves the others received with it alone, as
in SQS. Tidings' claims last at least ``limits.min_claim_ttl`` (60 s): a
shorter visibility timeout is served as that minimum, except 0, which
releases the message at once (ChangeMessageVisibility to 0, or a receive
with VisibilityTimeout 0).
"""

from __future__ import annotations

import time
from typing import Any

from tidings import errors
from tidings.api import claims, messages
from tidings.transport.sqs import attributes as attrs
from tidings.transport.sqs import messages as sqs_messages
from tidings.transport.sqs import receipts
from tidings.transport.sqs.calls import (
    MAX_BATCH,
    Call,
    batch_entries,
    each_entry,
    existing,
    failure,
    integer,
    queue_of,
    required_string,
    string_list,
)
from tidings.transport.sqs.errors import SqsError, invalid_parameter, missing_parameter

MAX_BATCH_BYTES = 256 * 1024


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
    claim = attrs.claim_for_visibility(visibility, limits)
    # Only the first claim waits: once one message came, SQS answers with
    # what else is there now.
    received = await claims.create_each(call.ctx, name, claim, count, wait=wait or None)
    now = time.time()
    try:
        shown = [_received(call, name, m, claim_id, system_names, attribute_names, now)
                 for m, claim_id in received]
    except Exception:
        # A message that cannot be answered must not stay invisible for the
        # whole visibility timeout: release what was claimed, then fail.
        await claims.release(call.ctx, name, received)
        raise
    if visibility == 0:
        await claims.release(call.ctx, name, received)
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
            await claims.update(call.ctx, name, receipt.claim_id,
                                attrs.claim_for_visibility(timeout, limits))
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
