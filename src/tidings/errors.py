"""Domain errors.

Each error carries the Zaqar title and a description for the client. The
transports map error classes to status codes, each in one place.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Base of every error a client may see."""

    title = "Service error"

    def __init__(self, description: str = "") -> None:
        super().__init__(description)
        self.description = description


# --- 400: the request is wrong -------------------------------------------


class ValidationFailed(TidingsError):
    """A value is out of its allowed range or breaks an API rule."""

    title = "Invalid API request"


class InvalidBody(TidingsError):
    """The body is not JSON, or a field has the wrong type."""

    title = "Invalid request body"


class InvalidParameter(TidingsError):
    """A query parameter could not be parsed."""

    title = "Invalid parameter"


class MissingHeader(TidingsError):
    title = "Missing header value"


class InvalidUUID(TidingsError):
    title = "Wrong UUID value"


class ProjectMissing(TidingsError):
    title = "Project-Id Missing"


class ProjectEmpty(TidingsError):
    title = "Empty project header not allowed"


class InvalidQueueName(TidingsError):
    title = "Invalid queue identification"


class InvalidContentType(TidingsError):
    title = "Invalid Content-Type"


class UnsupportedMediaType(TidingsError):
    title = "415 Unsupported Media Type"


class NotAcceptable(TidingsError):
    """The client accepts no JSON (Zaqar answers only JSON)."""

    title = "406 Not Acceptable"


class ClaimNotValid(TidingsError):
    """A claim id was given for a message it does not hold."""

    title = "Unable to delete"


class MessageNotClaimed(ClaimNotValid):
    """A claim id was given, but the message is not claimed."""


class ClaimDoesNotExist(ClaimNotValid):
    """The claim id given with a delete is unknown or expired."""


# --- 401 ------------------------------------------------------------------


class Unauthorized(TidingsError):
    """No token, or one Keystone does not accept. ``challenge`` is the
    WWW-Authenticate value keystonemiddleware sends."""

    title = "Unauthorized"

    def __init__(self, description: str = "", challenge: str | None = None) -> None:
        super().__init__(description)
        self.challenge = challenge


# --- 403 ------------------------------------------------------------------


class Forbidden(TidingsError):
    """The policy denies the operation, or a pre-signed URL does not cover
    the request."""

    title = "Forbidden"



class QuotaExceeded(TidingsError):
    """A per-project quota (settings ``quotas``) would be exceeded: nothing
    was written."""

    title = "Quota exceeded"


class MessageIsClaimed(TidingsError):
    """Deleting a claimed message needs its claim id."""

    title = "Unable to delete"


# --- 404 ------------------------------------------------------------------


class NotFound(TidingsError):
    title = "Not found"


class QueueDoesNotExist(NotFound):
    pass


class MessageDoesNotExist(NotFound):
    pass


class ClaimNotFound(NotFound):
    pass


class SubscriptionDoesNotExist(NotFound):
    pass


class DeliveryDoesNotExist(NotFound):
    pass


# --- 409 ------------------------------------------------------------------


class Conflict(TidingsError):
    title = "Resource conflict"


# --- 413 ------------------------------------------------------------------


class PayloadTooLarge(TidingsError):
    title = "Request Entity Too Large"


# --- 429 ------------------------------------------------------------------


class RateLimited(TidingsError):
    """The project sent more requests than quotas.requests_per_second_per_project
    allows; ``retry_after`` is the seconds until one more would be accepted."""

    title = "Too many requests"

    def __init__(self, description: str = "", retry_after: float = 1.0) -> None:
        super().__init__(description)
        self.retry_after = retry_after


# --- 503 ------------------------------------------------------------------


class ServiceUnavailable(TidingsError):
    """The storage backend failed or could not be reached."""

    title = "Service temporarily unavailable"
