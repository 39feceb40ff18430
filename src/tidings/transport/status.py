"""The HTTP status of each domain error: the HTTP API answers with it and
the WebSocket API puts it in its response headers, so both transports read
it here."""

from __future__ import annotations

from tidings import errors

# Most specific class first: the first match wins.
STATUS_BY_ERROR: list[tuple[type[errors.TidingsError], int]] = [
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.QuotaExceeded, 403),
    (errors.RateLimited, 429),
    (errors.MessageIsClaimed, 403),
    (errors.ClaimNotValid, 400),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.StorageFull, 507),
    (errors.NotAcceptable, 406),
    (errors.ServiceUnavailable, 503),
    (errors.TidingsError, 400),
]


def status_code(error: errors.TidingsError) -> int:
    """The HTTP status code that answers ``error``."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 400
