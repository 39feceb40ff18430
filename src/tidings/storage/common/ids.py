"""Public ids: a keyed permutation of a database's counters.

SQLite and PostgreSQL number messages, subscriptions and deliveries with
one counter per table for the whole server, because FIFO order and markers
need a number that grows. Shown as it is, that number tells any tenant how
much every other tenant posts: two of my messages 6 apart mean 5 posts by
somebody else in between. So the number never leaves the database as it is:
a public id is the AES encryption, under a key kept in the database itself,
of one 16-byte block holding

    [kind: 1 byte][zeros: 3 bytes][token: 4 bytes][counter: 8 bytes]

AES is a permutation, so the id decrypts back to its counter (markers keep
paging in counter order, an id finds its row by primary key) while two ids
look like independent random numbers to anyone without the key: nothing can
be read from their difference. Decrypting a string that was never issued
gives a block whose kind and zeros do not match (a chance of 2**-32), so a
made-up id is refused before any query, and an id of one kind cannot stand
for another.

Ids issued before this scheme (the counter in hex, with the token after it
for subscriptions and deliveries) keep working and keep their form: each
database records, when it takes the scheme on, the first counter value the
scheme numbers, and a row below it is named, and found, by its plain id.
Above it a plain number is refused: it would let a client page from any
counter value it likes and so measure other tenants' traffic again, which
the scheme exists to prevent.

One codec per database (each pool has its own key); the encryptor and
decryptor are per thread, since the drivers call in from their reader and
writer threads and a cipher context is not shareable.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

KEY_BYTES = 16
_COUNTER_MAX = 2**63  # SQLite INTEGER and PostgreSQL bigint are signed 64-bit


class IdKind(enum.IntEnum):
    """What a public id names; its byte in the block keeps the kinds apart."""

    MESSAGE = 1
    SUBSCRIPTION = 2
    DELIVERY = 3


class IdCodec:
    """Turns (kind, counter, token) into a public id and back."""

    @classmethod
    def from_scheme(cls, key: bytes, messages_below: int, subscriptions_below: int,
                    deliveries_below: int) -> IdCodec:
        """From a database's id_scheme row (its key and legacy thresholds)."""
        return cls(bytes(key), {IdKind.MESSAGE: messages_below,
                                IdKind.SUBSCRIPTION: subscriptions_below,
                                IdKind.DELIVERY: deliveries_below})

    def __init__(self, key: bytes, legacy_below: Mapping[IdKind, int]) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an id key has {KEY_BYTES} bytes, not {len(key)}")
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())
        # Plain (pre-scheme) ids of each kind are accepted below this counter.
        self._legacy_below = {kind: legacy_below.get(kind, 1) for kind in IdKind}
        self._local = threading.local()

    # --- messages: the counter alone ------------------------------------

    def message_id(self, counter: int) -> str:
        if counter < self._legacy_below[IdKind.MESSAGE]:
            return f"{counter:016x}"
        return self._encryptor().update(_MESSAGE_PREFIX + counter.to_bytes(8, "big")).hex()

    def message_ids(self, counters: range) -> list[str]:
        """The ids of a run of counters (a batch post), in one cipher call.

        Every post names its ids, so this is on the hot path: a post of one
        takes the single-block path (a generator, a join and a slice per
        id cost twice the cipher call), and a batch is hexed once and cut."""
        if len(counters) == 1 or (counters and counters[0] < self._legacy_below[IdKind.MESSAGE]):
            return [self.message_id(c) for c in counters]
        prefix = _MESSAGE_PREFIX
        out = self._encryptor().update(
            b"".join([prefix + c.to_bytes(8, "big") for c in counters])).hex()
        return [out[i:i + 32] for i in range(0, len(out), 32)]

    def parse_message_id(self, text: str) -> int | None:
        """The counter of a message id, or None for anything never issued."""
        if len(text) == 16:
            raw = _hex(text)
            value = int.from_bytes(raw, "big") if raw is not None else 0
            return value if 0 < value < self._legacy_below[IdKind.MESSAGE] else None
        parsed = self._decrypt(IdKind.MESSAGE, text)
        # A message's block has no token: four more bytes that must be zero.
        return parsed[0] if parsed and parsed[1] == 0 else None

    def parse_message_ids(self, texts: Iterable[str]) -> list[int]:
        """The counters of the ids that name a message, once each, in order."""
        parsed = (self.parse_message_id(text) for text in dict.fromkeys(texts))
        return [counter for counter in parsed if counter is not None]

    # --- subscriptions and deliveries: the counter and the row's token --

    def public_id(self, kind: IdKind, counter: int, token: int) -> str:
        if counter < self._legacy_below[kind]:
            return f"{counter:016x}{token:08x}"
        return self._encrypt(kind, counter, token)

    def parse_public_id(self, kind: IdKind, text: str) -> tuple[int, int] | None:
        """(counter, token) of a subscription or delivery id, else None."""
        if len(text) == 24:
            raw = _hex(text)
            counter = int.from_bytes(raw[:8], "big") if raw is not None else 0
            if 0 < counter < self._legacy_below[kind]:
                return counter, int.from_bytes(raw[8:], "big")  # type: ignore[index]  # raw is not None when counter > 0
            return None
        return self._decrypt(kind, text)

    def marker(self, kind: IdKind, text: str | None) -> int:
        """The counter a listing continues after: 0 (the start) for none or
        nonsense."""
        if not text:
            return 0
        if kind is IdKind.MESSAGE:
            return self.parse_message_id(text) or 0
        parsed = self.parse_public_id(kind, text)
        return parsed[0] if parsed else 0

    # --- the cipher -------------------------------------------------------

    def _encrypt(self, kind: IdKind, counter: int, token: int) -> str:
        return self._encryptor().update(_block(kind, counter, token)).hex()

    def _decrypt(self, kind: IdKind, text: str) -> tuple[int, int] | None:
        raw = _hex(text) if len(text) == 32 else None
        if raw is None:
            return None
        block = self._decryptor().update(raw)
        if block[0] != kind or block[1:4] != b"\0\0\0":
            return None
        counter = int.from_bytes(block[8:], "big")
        if not 0 < counter < _COUNTER_MAX:
            return None
        return counter, int.from_bytes(block[4:8], "big")

    def _encryptor(self) -> CipherContext:
        enc = getattr(self._local, "enc", None)
        if enc is None:
            enc = self._local.enc = self._cipher.encryptor()
        return enc

    def _decryptor(self) -> CipherContext:
        dec = getattr(self._local, "dec", None)
        if dec is None:
            dec = self._local.dec = self._cipher.decryptor()
        return dec


# A message's block up to its counter: the kind, three zeros and a zero
# token, the same for every message id.
_MESSAGE_PREFIX = bytes((IdKind.MESSAGE, 0, 0, 0, 0, 0, 0, 0))


def _block(kind: IdKind, counter: int, token: int) -> bytes:
    return (bytes((kind, 0, 0, 0)) + (token & 0xFFFFFFFF).to_bytes(4, "big")
            + counter.to_bytes(8, "big"))


def _hex(text: str) -> bytes | None:
    """The bytes of lower-case hex digits, exactly as the ids are written
    (fromhex alone also takes spaces and capitals), else None."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None
