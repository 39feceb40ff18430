"""Queues with ``_enable_encrypt_messages``: bodies are AES-256-GCM at rest,
plaintext to clients."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from tests.http.util import JSON_PATCH, assert_error, other_client
from tests.support.notify_server import ENCRYPTION_KEY, NotifyServer
from tidings import crypto
from tidings.config import EncryptionSettings, Settings

pytestmark = pytest.mark.usefixtures("notify_log_clean")


def stored_text(db_path: Path) -> str:
    """Everything the database holds, as SQL text, read through a read-only
    connection (which sees the WAL too), plus the raw bytes of its files."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")
                   if p.is_file())  # the -bus directory holds no data
    return dump + raw.decode("latin-1")


def test_bodies_are_encrypted_at_rest(nhttp: httpx.Client, notify_server: NotifyServer
                                      ) -> None:
    secret = f"top-secret-{uuid.uuid4().hex}"
    control = f"in-the-clear-{uuid.uuid4().hex}"
    assert nhttp.put("/v2/queues/vault", json={"_enable_encrypt_messages": True}
                     ).status_code == 201
    assert nhttp.get("/v2/queues/vault").json()["_enable_encrypt_messages"] is True
    resp = nhttp.post("/v2/queues/vault/messages",
                      json={"messages": [{"body": {"s": secret}}, {"body": secret}]})
    assert resp.status_code == 201, resp.text
    nhttp.post("/v2/queues/plain/messages", json={"messages": [{"body": control}]})

    text = stored_text(notify_server.db_path)
    assert control in text  # the search works
    assert secret not in text
    assert crypto.MARKER in text

    listing = nhttp.get("/v2/queues/vault/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listing["messages"]] == [{"s": secret}, secret]


def test_every_read_decrypts(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/vault", json={"_enable_encrypt_messages": True})
    bodies = [{"n": i, "list": [1, "two", None]} for i in range(4)]
    hrefs = nhttp.post("/v2/queues/vault/messages",
                       json={"messages": [{"body": b} for b in bodies]}).json()["resources"]
    ids = [h.rsplit("/", 1)[1] for h in hrefs]
    assert nhttp.get(hrefs[0]).json()["body"] == bodies[0]
    many = nhttp.get("/v2/queues/vault/messages", params={"ids": ",".join(ids[:2])}).json()
    assert [m["body"] for m in many["messages"]] == bodies[:2]
    with other_client(nhttp) as peer:
        assert [m["body"] for m in peer.get("/v2/queues/vault/messages").json()["messages"]
                ] == bodies
    claim = nhttp.post("/v2/queues/vault/claims", params={"limit": 2})
    assert claim.status_code == 201
    assert [m["body"] for m in claim.json()["messages"]] == bodies[:2]
    claim_get = nhttp.get(claim.headers["location"]).json()
    assert [m["body"] for m in claim_get["messages"]] == bodies[:2]
    popped = nhttp.delete("/v2/queues/vault/messages", params={"pop": 2}).json()
    assert [m["body"] for m in popped["messages"]] == bodies[2:]


def test_turning_encryption_off_keeps_old_messages_readable(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/vault", json={"_enable_encrypt_messages": True})
    nhttp.post("/v2/queues/vault/messages", json={"messages": [{"body": "old"}]})
    resp = nhttp.patch("/v2/queues/vault", headers={"Content-Type": JSON_PATCH},
                       json=[{"op": "replace", "path": "/metadata/_enable_encrypt_messages",
                              "value": False}])
    assert resp.status_code == 200, resp.text
    nhttp.post("/v2/queues/vault/messages", json={"messages": [{"body": "new"}]})
    listing = nhttp.get("/v2/queues/vault/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listing["messages"]] == ["old", "new"]


def test_encryption_can_be_turned_on_by_patch(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/later")
    resp = nhttp.patch("/v2/queues/later", headers={"Content-Type": JSON_PATCH},
                       json=[{"op": "add", "path": "/metadata/_enable_encrypt_messages",
                              "value": True}])
    assert resp.status_code == 200 and resp.json()["_enable_encrypt_messages"] is True


def test_delivery_payloads_show_plaintext(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/vault", json={"_enable_encrypt_messages": True})
    sid = nhttp.post("/v2/queues/vault/subscriptions",
                     json={"subscriber": "mailto:a@example.com"}).json()["subscription_id"]
    nhttp.post("/v2/queues/vault/messages", json={"messages": [{"body": {"k": "v"}}]})
    listing = nhttp.get(f"/v2/queues/vault/subscriptions/{sid}/deliveries",
                        params={"status": "pending"}).json()
    assert [d["payload"]["body"] for d in listing["deliveries"]] == [{"k": "v"}]


def test_no_key_no_encrypted_queue(http: httpx.Client) -> None:
    """The session's server has no encryption key: asking for encryption is
    a 400 when the metadata is set, not a failure at the first post."""
    body = assert_error(http.put("/v2/queues/vault", json={"_enable_encrypt_messages": True}),
                        400, "Invalid API request")
    assert "encryption" in body["description"]
    http.put("/v2/queues/vault")
    assert_error(http.patch("/v2/queues/vault", headers={"Content-Type": JSON_PATCH},
                            json=[{"op": "add", "path": "/metadata/_enable_encrypt_messages",
                                   "value": True}]), 400)
    assert http.get("/v2/queues/vault").json()["_enable_encrypt_messages"] is False
    # False is fine.
    assert http.put("/v2/queues/other", json={"_enable_encrypt_messages": False}
                    ).status_code == 201


def test_bad_values(nhttp: httpx.Client) -> None:
    assert_error(nhttp.put("/v2/queues/vault", json={"_enable_encrypt_messages": "yes"}), 400)


# --- the functions the delivery worker uses -------------------------------------------


def test_decrypt_body_round_trip() -> None:
    settings = Settings(encryption=EncryptionSettings(key=ENCRYPTION_KEY))
    key = crypto.parse_key(ENCRYPTION_KEY)
    assert key is not None
    body = {"a": [1, 2, {"b": None}], "s": "é"}
    sealed = crypto.encrypt_body(body, key)
    assert crypto.is_encrypted(sealed) and "é" not in str(sealed)
    assert crypto.decrypt_body(sealed, settings) == body
    assert crypto.decrypt_body(sealed, settings.encryption) == body
    assert crypto.decrypt_body(sealed, key) == body
    # Two encryptions of one body differ (a fresh nonce each time).
    assert crypto.encrypt_body(body, key) != sealed
    # Not encrypted: unchanged.
    assert crypto.decrypt_body({"x": 1}, settings) == {"x": 1}
    assert crypto.decrypt_body("text", settings) == "text"
    # Another key, or a tampered body: returned as stored, not an exception.
    other = base64.b64encode(b"\x01" * 32).decode()
    assert crypto.decrypt_body(sealed, Settings(encryption=EncryptionSettings(key=other))
                               ) == sealed
    tampered = {crypto.MARKER: sealed[crypto.MARKER][:-4] + "AAAA"}
    assert crypto.decrypt_body(tampered, key) == tampered


@pytest.mark.parametrize("value", ["nope!", base64.b64encode(b"short").decode()])
def test_bad_keys_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        crypto.parse_key(value)
    assert crypto.parse_key("") is None
