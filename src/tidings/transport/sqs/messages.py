"""SQS messages on Tidings messages: the stored body, message attributes
and the MD5 digests the SDKs verify.

What is stored, so that a Zaqar client reading a message sent over SQS
sees a sensible body:

- a message without message attributes is stored as its body, a JSON
  string: a Zaqar client reads ``"body": "hello"``;
- a message with attributes is stored as the object
  ``{"Body": "hello", "MessageAttributes": {"name": {"DataType": "String",
  "StringValue": "v"}}}`` (binary values in base64, as SQS's JSON
  protocol carries them), the only place a Tidings message can keep them.

Read back over SQS, a body of exactly that shape is unwrapped; any other
body a Zaqar client posted is the message's text when it is a string, or
its JSON when it is not (``{"event": 1}`` reads as ``'{"event":1}'``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from typing import Any

import msgspec

from tidings.transport.sqs.errors import SqsError, invalid_parameter

ENVELOPE_KEYS = frozenset({"Body", "MessageAttributes"})
MAX_ATTRIBUTES = 10
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[^\s]{1,255})?$")
# The characters SQS accepts in a body (XML 1.0's): #x9 | #xA | #xD |
# #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
INVALID_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def check_body(body: Any) -> str:
    if not isinstance(body, str):
        raise invalid_parameter("The MessageBody must be a string.")
    if not body:
        raise invalid_parameter("The request must contain a non-empty MessageBody.")
    if INVALID_CHARACTER.search(body):
        raise SqsError("InvalidMessageContents",
                       "Invalid binary character was found in the message body.")
    return body


def check_attributes(attributes: Any) -> dict[str, dict[str, str]]:
    """The MessageAttributes of a send, checked as SQS checks them; binary
    values stay in base64."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise invalid_parameter("MessageAttributes must be a map.")
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}].")
    checked = {}
    for name, value in attributes.items():
        checked[_attribute_name(name)] = _attribute_value(name, value)
    return checked


def _attribute_name(name: str) -> str:
    lowered = name.lower()
    if (not _ATTRIBUTE_NAME.match(name) or name.startswith(".") or name.endswith(".")
            or ".." in name or lowered.startswith(("aws.", "amazon."))):
        raise invalid_parameter(f"Message attribute name '{name}' is invalid.")
    return name


def _attribute_value(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid_parameter(f"The message attribute '{name}' must be a structure.")
    data_type = value.get("DataType")
    if not isinstance(data_type, str) or not data_type:
        raise invalid_parameter(f"The message attribute '{name}' must contain a non-empty "
                                "attribute type.")
    match = _DATA_TYPE.match(data_type)
    if match is None:
        raise invalid_parameter(f"The type of message attribute '{name}' is invalid: "
                                "use String, Number or Binary, optionally with a custom suffix.")
    if value.get("StringListValues") or value.get("BinaryListValues"):
        raise invalid_parameter(f"Message attribute list values in '{name}' are not supported.")
    if match.group(1) == "Binary":
        binary = value.get("BinaryValue")
        if not isinstance(binary, str) or not binary or _b64(binary) is None:
            raise invalid_parameter(f"The message attribute '{name}' with type 'Binary' must "
                                    "use field 'BinaryValue'.")
        return {"DataType": data_type, "BinaryValue": binary}
    text = value.get("StringValue")
    if not isinstance(text, str) or not text:
        raise invalid_parameter(f"The message attribute '{name}' with type '{match.group(1)}' "
                                "must use field 'StringValue'.")
    if match.group(1) == "Number" and not _is_number(text):
        raise invalid_parameter(f"Can't cast the value of message attribute '{name}' to a "
                                "number.")
    if INVALID_CHARACTER.search(text):
        raise SqsError("InvalidMessageContents",
                       f"Invalid binary character in the message attribute '{name}'.")
    return {"DataType": data_type, "StringValue": text}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def size_of(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """A message's size as SQS counts it against MaximumMessageSize: the
    body and every attribute's name, type and value, in bytes."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        if "BinaryValue" in value:
            size += len(_b64(value["BinaryValue"]) or b"")
        else:
            size += len(value["StringValue"].encode())
    return size


def stored_body(body: str, attributes: dict[str, dict[str, str]]) -> Any:
    """What Tidings stores for an SQS message (see the module docstring)."""
    if not attributes:
        return body
    return {"Body": body, "MessageAttributes": attributes}


def read_body(stored: Any) -> tuple[str, dict[str, dict[str, str]]]:
    """(Body, MessageAttributes) of a stored Tidings message body."""
    if isinstance(stored, str):
        return stored, {}
    if (isinstance(stored, dict) and stored.keys() == ENVELOPE_KEYS
            and isinstance(stored["Body"], str) and isinstance(stored["MessageAttributes"], dict)):
        return stored["Body"], stored["MessageAttributes"]
    return msgspec.json.encode(stored).decode(), {}


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: dict[str, dict[str, str]]) -> str | None:
    """MD5OfMessageAttributes as SQS computes it (the SDKs check it): for
    each attribute in name order, the name, the data type, a transport byte
    (1 string, 2 binary) and the value, each but the byte preceded by its
    length as a 4-byte big-endian integer. None without attributes."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        _update(digest, name.encode())
        _update(digest, value["DataType"].encode())
        if "BinaryValue" in value:
            digest.update(b"\x02")
            _update(digest, _b64(value["BinaryValue"]) or b"")
        else:
            digest.update(b"\x01")
            _update(digest, value["StringValue"].encode())
    return digest.hexdigest()


def _update(digest: Any, data: bytes) -> None:
    digest.update(struct.pack(">I", len(data)))
    digest.update(data)


def select_attributes(attributes: dict[str, dict[str, str]], names: list[str] | None
                      ) -> dict[str, dict[str, str]]:
    """The attributes a ReceiveMessage asked for: ``All`` or ``.*``, a name,
    or a prefix ending in ``.*``."""
    if not names or not attributes:
        return {}
    if "All" in names or ".*" in names:
        return attributes
    prefixes = tuple(name[:-1] for name in names if name.endswith(".*"))
    wanted = set(names)
    return {name: value for name, value in attributes.items()
            if name in wanted or (prefixes and name.startswith(prefixes))}
