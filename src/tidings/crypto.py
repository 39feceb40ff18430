"""Message bodies encrypted at rest (queues with ``_enable_encrypt_messages``).

The operation layer encrypts each body with AES-256-GCM before storage and
decrypts it on every read, so clients only ever see plaintext. The stored
body is an ordinary JSON object the drivers need not understand:

    {"$tidings_encrypted": "<base64 of 12-byte nonce + ciphertext + tag>"}

The plaintext is the body as JSON. The key is ``encryption.key`` in the
settings (32 bytes, base64). A MESSAGE delivery's payload holds the stored
body: the delivery worker calls ``decrypt_body`` before sending it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tidings import errors

log = logging.getLogger(__name__)

MARKER = "$tidings_encrypted"
METADATA_KEY = "_enable_encrypt_messages"
NONCE_SIZE = 12


def parse_key(value: str) -> bytes | None:
    """The key from its settings value (base64 of 32 bytes); None when
    empty. Raises ValueError for anything else."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("encryption.key must be base64") from None
    if len(key) != 32:
        raise ValueError(f"encryption.key must be 32 bytes (AES-256), not {len(key)}")
    return key


def _key_of(source: Any) -> bytes | None:
    """A key from bytes, a Service, a Settings or an EncryptionSettings."""
    if source is None or isinstance(source, bytes):
        return source
    if hasattr(source, "encryption_key"):  # Service
        return source.encryption_key
    if hasattr(source, "encryption"):  # Settings
        source = source.encryption
    return parse_key(getattr(source, "key", ""))


def is_encrypted(body: Any) -> bool:
    return type(body) is dict and len(body) == 1 and isinstance(body.get(MARKER), str)


def encrypt_body(body: Any, key: bytes) -> dict[str, str]:
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(key).encrypt(nonce, msgspec.json.encode(body), None)
    return {MARKER: base64.b64encode(nonce + sealed).decode()}


def decrypt_body(stored_body: Any, settings: Any) -> Any:
    """The plaintext body of a stored body; bodies that are not encrypted
    come back unchanged. ``settings``: the Settings, EncryptionSettings,
    Service, or the key itself.

    A body that looks encrypted but does not decrypt with the key (or with
    no key configured) is returned as stored, and logged.
    """
    if not is_encrypted(stored_body):
        return stored_body
    key = _key_of(settings)
    if key is None:
        log.warning("an encrypted message body was read but no encryption.key is set")
        return stored_body
    try:
        raw = base64.b64decode(stored_body[MARKER], validate=True)
        plain = AESGCM(key).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], None)
        return msgspec.json.decode(plain)
    except (binascii.Error, ValueError, InvalidTag, msgspec.DecodeError):
        log.warning("an encrypted message body could not be decrypted")
        return stored_body


def wants_encryption(metadata: dict[str, Any]) -> bool:
    return metadata.get(METADATA_KEY) is True


def check_metadata(service: Any, metadata: dict[str, Any]) -> None:
    """Refuse to turn encryption on when there is no key to encrypt with."""
    if wants_encryption(metadata) and service.encryption_key is None:
        raise errors.ValidationFailed(
            "_enable_encrypt_messages needs an encryption key on the server, and none is "
            "configured (encryption.key: 32 bytes, base64)."
        )


def seal(service: Any, metadata: dict[str, Any], body: Any) -> Any:
    """The body to store for a queue with this metadata."""
    if wants_encryption(metadata):
        if service.encryption_key is None:
            raise errors.ServiceUnavailable(
                "This queue encrypts messages, but the server has no encryption key."
            )
        return encrypt_body(body, service.encryption_key)
    return body
