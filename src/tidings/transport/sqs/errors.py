"""SQS errors as the AWS JSON 1.0 protocol shapes them, and the one table
that turns Tidings' domain errors into them.

An SQS error answer is ``{"__type": "com.amazonaws.sqs#<Shape>",
"message": ...}`` with SQS's status, plus the ``x-amzn-query-error:
<legacy code>;<Sender|Receiver>`` header: SQS moved from the query protocol
to JSON keeping its old error codes, and botocore reports that legacy code
as ``Error.Code`` (``AWS.SimpleQueueService.NonExistentQueue``) while it
picks the exception class (``client.exceptions.QueueDoesNotExist``) from
the shape name in ``__type``. Both must be right for code written against
either to work.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings import errors

PREFIX = "com.amazonaws.sqs#"


@dataclass(frozen=True, slots=True)
class Kind:
    """One SQS error: the shape name, the legacy query code, the status and
    whose fault it is."""

    shape: str
    code: str
    status: int = 400
    sender: bool = True


def _kinds(*kinds: Kind) -> dict[str, Kind]:
    return {kind.shape: kind for kind in kinds}


KINDS = _kinds(
    Kind("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
    Kind("QueueNameExists", "QueueAlreadyExists"),
    Kind("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
    Kind("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"),
    Kind("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
    Kind("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
    Kind("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest"),
    Kind("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId"),
    Kind("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"),
    Kind("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation"),
    Kind("InvalidAttributeName", "InvalidAttributeName"),
    Kind("InvalidAttributeValue", "InvalidAttributeValue"),
    Kind("InvalidMessageContents", "InvalidMessageContents"),
    Kind("InvalidAddress", "InvalidAddress", 404),
    Kind("ResourceNotFoundException", "ResourceNotFoundException", 404),
    Kind("OverLimit", "OverLimit", 403),
    Kind("RequestThrottled", "RequestThrottled", 403),
    # Common AWS errors: not modelled in SQS's service description, the
    # same code in both places.
    Kind("InvalidParameterValue", "InvalidParameterValue"),
    Kind("MissingParameter", "MissingParameter"),
    Kind("InvalidAction", "InvalidAction"),
    Kind("AccessDenied", "AccessDenied", 403),
    Kind("MissingAuthenticationToken", "MissingAuthenticationToken", 403),
    Kind("InvalidClientTokenId", "InvalidClientTokenId", 403),
    Kind("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403),
    Kind("IncompleteSignature", "IncompleteSignature", 400),
    Kind("InternalFailure", "InternalFailure", 500, sender=False),
    Kind("ServiceUnavailable", "ServiceUnavailable", 503, sender=False),
)


class SqsError(Exception):
    """An error to answer in SQS's shape; ``shape`` is a key of KINDS."""

    def __init__(self, shape: str, message: str) -> None:
        super().__init__(message)
        self.kind = KINDS[shape]
        self.message = message


def invalid_parameter(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def missing_parameter(name: str) -> SqsError:
    return SqsError("MissingParameter", f"The request must contain the parameter {name}.")


def queue_does_not_exist() -> SqsError:
    return SqsError("QueueDoesNotExist", "The specified queue does not exist.")


# Most specific class first: the first match wins. What is not listed is
# the client's mistake in a value: InvalidParameterValue.
SHAPE_BY_ERROR: list[tuple[type[errors.TidingsError], str]] = [
    (errors.QueueDoesNotExist, "QueueDoesNotExist"),
    (errors.Unauthorized, "InvalidClientTokenId"),
    (errors.Forbidden, "AccessDenied"),
    (errors.QuotaExceeded, "OverLimit"),
    (errors.RateLimited, "RequestThrottled"),
    (errors.ServiceUnavailable, "ServiceUnavailable"),
    (errors.TidingsError, "InvalidParameterValue"),
]


def from_domain(error: errors.TidingsError) -> SqsError:
    """The SQS error for a Tidings error that an operation raised."""
    if isinstance(error, errors.QueueDoesNotExist):
        return queue_does_not_exist()
    for cls, shape in SHAPE_BY_ERROR:
        if isinstance(error, cls):
            return SqsError(shape, error.description or error.title)
    return SqsError("InvalidParameterValue", error.description or error.title)


def answer(error: SqsError) -> tuple[int, dict[str, str], dict[str, str]]:
    """(status, headers, body) of an error answer."""
    kind = error.kind
    side = "Sender" if kind.sender else "Receiver"
    headers = {"x-amzn-query-error": f"{kind.code};{side}"}
    return kind.status, headers, {"__type": PREFIX + kind.shape, "message": error.message}
