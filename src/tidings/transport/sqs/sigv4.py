"""AWS Signature Version 4 on SQS requests: who signed, and the evidence
Keystone needs to check the signature.

Under noauth the project is the access key id and the signature is not
checked (as the Zaqar API trusts X-Project-ID there). Under Keystone the
signature is checked by Keystone itself, through its EC2-credentials API
(``POST /v3/ec2tokens``, the API OpenStack's S3 and EC2 front ends use):
Tidings sends the parts of the request that were signed (the signed
headers, the path, the hash of the body) with the signature, Keystone
recomputes it with the credential's secret and answers with a token of the
credential's project. The secret never leaves Keystone; users create keys
with ``openstack ec2 credentials create``.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidings.transport.sqs.errors import SqsError

ALGORITHM = "AWS4-HMAC-SHA256"
# How far a request's X-Amz-Date may be from the server's clock, as in AWS.
MAX_SKEW = 15 * 60
_FIELD = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")
_DATE = re.compile(r"^\d{8}T\d{6}Z$")


@dataclass(frozen=True, slots=True)
class Signature:
    """The parts of a SigV4 Authorization header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def is_signed(authorization: str | None) -> bool:
    return authorization is not None and authorization.startswith(ALGORITHM)


def parse(authorization: str | None) -> Signature:
    """The signature of a request; MissingAuthenticationToken without one,
    IncompleteSignature when it is malformed."""
    if not authorization:
        raise SqsError("MissingAuthenticationToken",
                       "Request is missing Authentication Token")
    if not authorization.startswith(ALGORITHM + " "):
        raise SqsError("IncompleteSignature",
                       f"Unsupported authorization: use the {ALGORITHM} signature.")
    fields = dict(_FIELD.findall(authorization[len(ALGORITHM):]))
    scope = fields.get("Credential", "").split("/")
    if (len(scope) != 5 or not scope[0] or scope[4] != "aws4_request"
            or not fields.get("SignedHeaders") or not fields.get("Signature")):
        raise SqsError("IncompleteSignature",
                       "Authorization header requires Credential, SignedHeaders and Signature "
                       "parameters, with a credential scope of the form "
                       "<key>/<date>/<region>/<service>/aws4_request.")
    return Signature(access_key=scope[0], date=scope[1], region=scope[2], service=scope[3],
                     signed_headers=fields["SignedHeaders"].split(";"),
                     signature=fields["Signature"])


def check_date(amz_date: str | None, signature: Signature, now: float) -> None:
    """The request's time must be within MAX_SKEW of ``now`` and on the day
    of its credential scope: a replayed old request is refused."""
    if not amz_date or not _DATE.match(amz_date):
        raise SqsError("IncompleteSignature", "The request must carry an X-Amz-Date header "
                       "of the form YYYYMMDDTHHMMSSZ.")
    if not amz_date.startswith(signature.date):
        raise SqsError("SignatureDoesNotMatch",
                       "The date of the credential scope does not match X-Amz-Date.")
    signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    if abs(now - signed_at) > MAX_SKEW:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        raise SqsError("SignatureDoesNotMatch",
                       f"Signature expired: {amz_date} is now earlier than {stamp} - 15 min."
                       if signed_at < now else
                       f"Signature not yet current: {amz_date} is still later than {stamp} "
                       "+ 15 min.")


def ec2_credentials(signature: Signature, method: str, path: str, body: bytes,
                    header: Callable[[str], str | None]) -> dict[str, Any]:
    """What Keystone's ``POST /v3/ec2tokens`` needs to recompute the
    signature (keystoneclient's Ec2Signer): the signed headers with their
    values, plus Authorization and X-Amz-Date under those exact names."""
    headers: dict[str, str] = {}
    for name in signature.signed_headers:
        value = header(name)
        if value is not None:
            # SigV4 canonical values: trimmed, inner runs of spaces as one.
            headers[name] = " ".join(value.split())
    headers["Authorization"] = header("Authorization") or ""
    headers["X-Amz-Date"] = header("X-Amz-Date") or ""
    return {
        "access": signature.access_key,
        "signature": signature.signature,
        "host": header("Host") or "",
        "verb": method,
        "path": path,
        "params": {},
        "headers": headers,
        "body_hash": hashlib.sha256(body).hexdigest(),
    }
