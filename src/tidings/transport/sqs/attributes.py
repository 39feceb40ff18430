"""SQS queue attributes on Tidings queue metadata.

=============================  ============================================
SQS attribute                  Tidings queue metadata
=============================  ============================================
DelaySeconds                   ``_default_message_delay``
MessageRetentionPeriod         ``_default_message_ttl``
MaximumMessageSize             ``_max_messages_post_size``
RedrivePolicy                  ``_dead_letter_queue`` + ``_max_claim_count``
SqsManagedSseEnabled           ``_enable_encrypt_messages``
VisibilityTimeout              ``_sqs_visibility_timeout`` (the ttl of
                               the claims a receive makes)
ReceiveMessageWaitTimeSeconds  ``_sqs_receive_wait_time_seconds``
=============================  ============================================

Attributes SQS has and Tidings cannot honour (Policy, KMS keys, FIFO
settings, RedriveAllowPolicy) are refused with InvalidAttributeName, not
ignored: a client that sets one must not believe it took effect.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.config import Limits
from tidings.transport.sqs.errors import SqsError, invalid_parameter

VISIBILITY = "_sqs_visibility_timeout"
RECEIVE_WAIT = "_sqs_receive_wait_time_seconds"
TAGS = "_sqs_tags"
MOVE_TASK = "_sqs_message_move_task"
DEAD_LETTER_QUEUE = "_dead_letter_queue"
MAX_CLAIM_COUNT = "_max_claim_count"

# SQS's own ranges; a value must also fit the server's limits.
MAX_VISIBILITY = 43_200
MAX_RECEIVE_WAIT = 20
MIN_MESSAGE_SIZE = 1024
MAX_RECEIVE_COUNT = 1000

READ_ONLY = frozenset({
    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
    "QueueArn",
})
UNSUPPORTED = frozenset({
    "Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "ContentBasedDeduplication",
    "DeduplicationScope", "FifoThroughputLimit", "RedriveAllowPolicy",
})
READABLE = (
    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "QueueArn",
    "VisibilityTimeout", "ReceiveMessageWaitTimeSeconds", "DelaySeconds",
    "MessageRetentionPeriod", "MaximumMessageSize", "RedrivePolicy", "SqsManagedSseEnabled",
)
# Every name SQS knows, so that asking for one Tidings does not keep is not
# an error but simply absent from the answer, as SQS leaves out a Policy
# that was never set.
KNOWN = frozenset(READABLE) | READ_ONLY | UNSUPPORTED | {"FifoQueue"}


def arn(region: str, project: str, queue: str) -> str:
    return f"arn:aws:sqs:{region}:{project}:{queue}"


def queue_of_arn(value: Any, project: str, parameter: str) -> str:
    """The queue an ARN of this project names."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise invalid_parameter(f"Value {value} for parameter {parameter} is invalid. "
                                "Reason: it is not an SQS queue ARN.")
    if parts[4] != project:
        raise invalid_parameter(f"Value {value} for parameter {parameter} is invalid. "
                                "Reason: the queue belongs to another account.")
    return parts[5]


def _integer(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high or str(number) != value.strip():
        raise SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
    return number


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
    return value.lower() == "true"


def _redrive_policy(value: str, project: str) -> tuple[str | None, int | None]:
    """(dead letter queue, max receive count) of a RedrivePolicy; (None,
    None) for an empty one, which removes it."""
    if not value.strip():
        return None, None
    try:
        policy = msgspec.json.decode(value)
    except msgspec.DecodeError:
        policy = None
    reason = None
    if not isinstance(policy, dict):
        reason = "Invalid value for the parameter RedrivePolicy: it must be a JSON object."
    elif "deadLetterTargetArn" not in policy or "maxReceiveCount" not in policy:
        reason = ("Value " + value + " for parameter RedrivePolicy is invalid. Reason: "
                  "Redrive policy does not contain mandatory attribute: "
                  + ("deadLetterTargetArn." if "deadLetterTargetArn" not in policy
                     else "maxReceiveCount."))
    if reason is not None:
        raise invalid_parameter(reason)
    dlq = queue_of_arn(policy["deadLetterTargetArn"], project, "RedrivePolicy")
    count = policy["maxReceiveCount"]
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not (
            1 <= count <= MAX_RECEIVE_COUNT):
        raise invalid_parameter(f"Value {value} for parameter RedrivePolicy is invalid. Reason: "
                                f"Invalid value for maxReceiveCount: {count}, valid values are "
                                f"from 1 to {MAX_RECEIVE_COUNT} both inclusive.")
    return dlq, count


def to_metadata(attributes: Any, limits: Limits, project: str, creating: bool
                ) -> dict[str, Any]:
    """The metadata changes an Attributes map asks for: key -> new value,
    None to remove the key. Refuses what Tidings cannot honour."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        raise invalid_parameter("Attributes must be a map of strings to strings.")
    changes: dict[str, Any] = {}
    for name, value in attributes.items():
        if name == "DelaySeconds":
            changes["_default_message_delay"] = _integer(name, value, 0,
                                                         limits.max_message_delay)
        elif name == "MessageRetentionPeriod":
            changes["_default_message_ttl"] = _integer(name, value, limits.min_message_ttl,
                                                       limits.max_message_ttl)
        elif name == "MaximumMessageSize":
            changes["_max_messages_post_size"] = _integer(
                name, value, min(MIN_MESSAGE_SIZE, limits.max_messages_post_size),
                limits.max_messages_post_size)
        elif name == "VisibilityTimeout":
            changes[VISIBILITY] = _integer(name, value, 0, min(MAX_VISIBILITY,
                                                               limits.max_claim_ttl))
        elif name == "ReceiveMessageWaitTimeSeconds":
            changes[RECEIVE_WAIT] = _integer(name, value, 0, min(MAX_RECEIVE_WAIT,
                                                                 limits.max_wait))
        elif name == "RedrivePolicy":
            changes[DEAD_LETTER_QUEUE], changes[MAX_CLAIM_COUNT] = _redrive_policy(value,
                                                                                 project)
        elif name == "SqsManagedSseEnabled":
            changes["_enable_encrypt_messages"] = _boolean(name, value)
        elif name == "FifoQueue" and creating:
            if _boolean(name, value):
                raise SqsError("InvalidAttributeValue", "FIFO queues are not supported: "
                               "FifoQueue can only be false.")
        elif name in UNSUPPORTED:
            raise SqsError("InvalidAttributeName",
                           f"The attribute {name} is not supported by this service.")
        else:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
    return changes


def check_names(names: Any) -> list[str]:
    """The AttributeNames of a GetQueueAttributes."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid_parameter("AttributeNames must be a list of strings.")
    for name in names:
        if name != "All" and name not in KNOWN:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
    return names


def from_metadata(metadata: dict[str, Any], counts: dict[str, Any], names: list[str],
                  limits: Limits, queue_arn: str, dlq_arn: str | None) -> dict[str, str]:
    """The attributes asked for (``names``), from the queue's metadata with
    the reserved keys' defaults and its message counts."""
    wanted = READABLE if "All" in names else [n for n in READABLE if n in names]
    values: dict[str, Any] = {
        "ApproximateNumberOfMessages": counts.get("free", 0),
        "ApproximateNumberOfMessagesNotVisible": counts.get("claimed", 0),
        "QueueArn": queue_arn,
        "VisibilityTimeout": metadata.get(VISIBILITY, limits.default_claim_ttl),
        "ReceiveMessageWaitTimeSeconds": metadata.get(RECEIVE_WAIT, 0),
        "DelaySeconds": metadata.get("_default_message_delay", 0),
        "MessageRetentionPeriod": metadata.get("_default_message_ttl",
                                               limits.default_message_ttl),
        "MaximumMessageSize": metadata.get("_max_messages_post_size",
                                           limits.max_messages_post_size),
        "SqsManagedSseEnabled": "true" if metadata.get("_enable_encrypt_messages") else "false",
    }
    if dlq_arn is not None and metadata.get(MAX_CLAIM_COUNT):
        values["RedrivePolicy"] = msgspec.json.encode(
            {"deadLetterTargetArn": dlq_arn,
             "maxReceiveCount": metadata[MAX_CLAIM_COUNT]}).decode()
    return {name: str(values[name]) for name in wanted if name in values}


def visibility_of(metadata: dict[str, Any], requested: int | None, limits: Limits) -> int:
    """A receive's visibility timeout: the request's, else the queue's."""
    if requested is not None:
        return requested
    value = metadata.get(VISIBILITY)
    return value if isinstance(value, int) else limits.default_claim_ttl


def claim_for_visibility(timeout: int, limits: Limits) -> dict[str, int]:
    """The claim document a visibility timeout becomes: Tidings' claims last
    from ``min_claim_ttl`` to ``max_claim_ttl``, so a shorter or longer
    timeout is served as the nearest of those."""
    return {"ttl": min(max(timeout, limits.min_claim_ttl), limits.max_claim_ttl),
            "grace": limits.default_claim_grace}


def receive_wait_of(metadata: dict[str, Any], requested: int | None) -> int:
    if requested is not None:
        return requested
    value = metadata.get(RECEIVE_WAIT)
    return value if isinstance(value, int) else 0
