"""Pre-signed URL signatures (no servers)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import pytest

from tidings import errors
from tidings.auth import signed

KEY = b"secret"
PATHS = ["/v2/queues/shared/messages"]
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
LATER = "2030-01-02T00:00:00"


def test_zaqar_layout() -> None:
    """The message is Zaqar's: str(list of paths), sorted methods, project,
    expires, joined by a literal backslash-n."""
    result = signed.create(KEY, PATHS, "proj", ["POST", "GET"], LATER, now=NOW)
    message = r"['/v2/queues/shared/messages']\nGET,POST\nproj\n2030-01-02T00:00:00"
    expected = hmac.new(KEY, message.encode(), hashlib.sha256).hexdigest()
    assert result == {"signature": expected, "expires": LATER, "paths": PATHS,
                      "methods": ["GET", "POST"], "project": "proj"}


@pytest.mark.parametrize("paths, methods, expires, expected", [
    (["/v2/queues/shared/messages"], ["GET"], "2030-01-02T00:00:00",
     "15607a8527e0607e15a7c0b268b2534ed89b486e8ee675c8ac44c439d3cbe6c5"),
    (["/v2/queues/shared/messages", "/v2/queues/shared/claims"], ["POST", "GET"],
     "2030-01-02T02:00:00+02:00",
     "f71840984c79b548ed5b96a9e1242ff7d7a4d228a561e21c6c5379dbd928e299"),
])
def test_known_vectors(paths: list, methods: list, expires: str, expected: str) -> None:
    """Signatures computed by Zaqar's own create_signed_url (key "test",
    project "p"), so URLs signed by either service verify on the other."""
    result = signed.create(b"test", paths, "p", methods, expires, now=NOW)
    assert result["signature"] == expected


def test_defaults_and_zones() -> None:
    result = signed.create(KEY, PATHS, "proj", now=NOW)
    assert result["methods"] == ["GET"]
    assert result["expires"] == "2030-01-02T00:00:00"  # one day
    # An expiry with a zone is normalized to UTC before signing.
    zoned = signed.create(KEY, PATHS, "proj", None, "2030-01-02T02:00:00+02:00", now=NOW)
    assert zoned["expires"] == LATER
    assert zoned["signature"] == result["signature"]
    assert signed.create(KEY, PATHS, "proj", None, "2030-01-02T00:00:00Z", now=NOW) == result


@pytest.mark.parametrize("expires", ["2029-12-31T23:59:59", "2030-01-01T00:00:00", "nonsense"])
def test_past_or_bad_expiry_is_refused(expires: str) -> None:
    with pytest.raises(ValueError):
        signed.create(KEY, PATHS, "proj", None, expires, now=NOW)


WEEK = timedelta(days=7)


@pytest.mark.parametrize("expires", ["2030-01-08T00:00:01", "9999-12-31T23:59:59"])
def test_expiry_past_the_maximum_lifetime_is_refused(expires: str) -> None:
    with pytest.raises(ValueError, match="at most 604800 seconds"):
        signed.create(KEY, PATHS, "proj", None, expires, now=NOW, max_lifetime=WEEK)


def test_expiry_at_the_maximum_lifetime_is_accepted() -> None:
    result = signed.create(KEY, PATHS, "proj", None, "2030-01-08T00:00:00", now=NOW,
                           max_lifetime=WEEK)
    assert result["expires"] == "2030-01-08T00:00:00"
    # The default lifetime (a day) is shortened to a shorter maximum.
    short = signed.create(KEY, PATHS, "proj", now=NOW, max_lifetime=timedelta(hours=1))
    assert short["expires"] == "2030-01-01T01:00:00"


def headers_for(result: dict) -> dict:
    return {"project": result["project"], "signature_value": result["signature"],
            "expires": result["expires"], "methods": ",".join(result["methods"]),
            "paths": ",".join(result["paths"])}


def test_verify_accepts_what_was_signed() -> None:
    result = signed.create(KEY, PATHS, "proj", ["GET", "POST"], LATER, now=NOW)
    identity = signed.verify(KEY, "POST", PATHS[0], **headers_for(result), now=NOW)
    assert identity.project == "proj" and identity.signed and not identity.roles
    assert identity.expires_at == datetime(2030, 1, 2, tzinfo=timezone.utc).timestamp()
    # A resource under a signed path, and methods in another order.
    h = headers_for(result) | {"methods": "POST,GET"}
    signed.verify(KEY, "GET", PATHS[0] + "/0123abcd", **h, now=NOW)


@pytest.mark.parametrize("method, path, change, reason", [
    ("DELETE", PATHS[0], {}, "does not allow DELETE"),
    ("GET", "/v2/queues/shared/claims", {}, "does not cover"),
    ("GET", "/v2/queues/shared/messagesX", {}, "does not cover"),
    ("GET", "/v2/queues/other/messages", {}, "does not cover"),
    ("GET", PATHS[0], {"project": "other"}, "does not match"),
    ("GET", PATHS[0], {"methods": "GET,POST,DELETE"}, "does not match"),
    ("GET", PATHS[0], {"paths": PATHS[0] + ",/v2/queues/x/messages"}, "does not match"),
    ("GET", PATHS[0], {"expires": "2030-01-03T00:00:00"}, "does not match"),
    ("GET", PATHS[0], {"signature_value": "0" * 64}, "does not match"),
    ("GET", PATHS[0], {"expires": "2029-01-01T00:00:00"}, "expired"),
    ("GET", PATHS[0], {"expires": "soon"}, "ISO 8601"),
    ("GET", PATHS[0], {"expires": None}, "URL-Expires"),
    ("GET", PATHS[0], {"project": None}, "X-Project-ID"),
])
def test_verify_refuses(method: str, path: str, change: dict, reason: str) -> None:
    result = signed.create(KEY, PATHS, "proj", ["GET", "POST"], LATER, now=NOW)
    with pytest.raises(errors.Forbidden, match=reason):
        signed.verify(KEY, method, path, **(headers_for(result) | change), now=NOW)


def test_another_key_does_not_verify() -> None:
    result = signed.create(KEY, PATHS, "proj", ["GET"], LATER, now=NOW)
    with pytest.raises(errors.Forbidden):
        signed.verify(b"other", "GET", PATHS[0], **headers_for(result), now=NOW)


def test_expiry_is_checked_against_the_clock() -> None:
    result = signed.create(KEY, PATHS, "proj", ["GET"], LATER, now=NOW)
    after = datetime(2030, 1, 2, 0, 0, 1, tzinfo=timezone.utc).timestamp()
    with pytest.raises(errors.Forbidden, match="expired"):
        signed.verify(KEY, "GET", PATHS[0], **headers_for(result), now=after)
