"""AWS Signature Version 4, computed as Keystone's EC2-credentials API
computes it (keystoneclient's ``Ec2Signer``), from the same evidence.

Keystone checks the first signature of an access key (``POST
/v3/ec2tokens``); once it has, the credential's secret is fetched and kept
for ``auth.keystone.cache_time`` (as Swift's s3token keeps it with
``secret_cache_duration``), and later requests of that key are checked
here with this function, without a Keystone round trip each. Computing it
from exactly what is sent to Keystone, the same way, means the two checks
cannot disagree.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

ALGORITHM = "AWS4-HMAC-SHA256"


def _field(authorization: str, name: str) -> str:
    return authorization.partition(f"{name}=")[2].split(",")[0]


def signature_of(secret: str, credentials: dict[str, Any]) -> str:
    """The signature of the request ``credentials`` describes (the body of
    an ec2tokens call: verb, path, headers with Authorization and
    X-Amz-Date, body_hash), made with ``secret``."""
    headers = credentials["headers"]
    authorization = headers["Authorization"]
    signed_names = _field(authorization, "SignedHeaders")
    lowered = {k.lower().strip(): v.strip() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed_names.split(";")
                                if name in lowered)
    # POST requests carry their parameters in the body: no query string.
    canonical_request = "\n".join((credentials["verb"].upper(), credentials["path"], "",
                                   canonical_headers, signed_names, credentials["body_hash"]))
    scope = _field(authorization, "Credential").split("/")
    date, region, service = scope[1], scope[2], scope[3]
    string_to_sign = "\n".join((ALGORITHM, headers["X-Amz-Date"], "/".join(scope[1:]),
                                hashlib.sha256(canonical_request.encode()).hexdigest()))
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def matches(secret: str, credentials: dict[str, Any]) -> bool:
    return hmac.compare_digest(signature_of(secret, credentials), credentials["signature"])
