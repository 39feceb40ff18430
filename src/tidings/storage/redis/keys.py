"""The key layout.

Every key of one queue starts with ``<prefix>q:{<project>/<queue>}``: the
part in braces is a Redis Cluster hash tag, so all of a queue's keys live in
one slot and one Lua script can change them atomically, on a single server
and on a Cluster alike. Project and queue names are percent-encoded, so a
"/" or a brace in a project name can neither make two queues share keys nor
break the hash tag.

Per queue (suffix after the base):
  :q   hash   meta (JSON), created: the queue exists iff this key does
  :s   string the message sequence (INCR); FIFO order and message ids
  :i   zset   message id by sequence (id order: listing)
  :f   zset   the same, for messages under no live claim (claims, pops
              and listings without claimed messages walk only these)
  :e   zset   message id by expiry (gc, live counts)
  :m   hash   message id -> record (msgpack, see scripts.py)
  :b   hash   message id -> body (JSON bytes, written once)
  :c   hash   claim id -> claim record (msgpack)
  :ce  zset   claim id by expiry (gc)
  :cl  zset   claim id by expiry, for claims whose messages are not yet
              back in :f (see scripts.release_expired)
  :d   hash   message id -> a dead-letter move not yet finished (Cluster)
  :dd  zset   dead-letter moves already received, by expiry (makes moves
              safe to repeat)

Notifications, under the same tag so a post writes its deliveries in the
same script as its messages (records: scripts.py):
  :ns  hash   subscription id -> record
  :no  zset   subscription id by sequence (creation order, listing)
  :ne  zset   subscription id by expiry (gc)
  :nu  hash   subscriber -> subscription id (one live one per subscriber)
  :nq  string the notification sequence (subscription and delivery ids)
  :nd  hash   delivery id -> record
  :nw  zset   pending delivery id by due time; a lease moves the score to
              the lease's end, so "due and not leased" is score <= now
  :np  zset   pending delivery id by sequence (listing)
  :nx  zset   dead delivery id by sequence (listing)
  :nk  zset   dead delivery id by time of death (gc retention)
  :nb:<subscription id>  zset  the subscription's delivery ids by sequence
  :w   the pub/sub channel a post publishes on (watch)

Subscription ids are 16 hex digits of :nq and 8 random ones, looked up in
the queue's own hash: they never resolve in another queue. Delivery ids
are the same followed by "." and the queue's member in base64url, so
``delivered(id)`` and friends find the queue's slot from the id alone.

Outside the queues (each on its own slot):
  <prefix>p:<project>  zset, score 0, member queue name: the per-project
                       index, listed in name order with ZRANGEBYLEX
  <prefix>queues       set of "<project>/<queue>" (encoded): every queue,
                       for gc and health
  <prefix>outbox       zset, member -> the earliest due time of the queue's
                       pending deliveries (a hint, never later than the
                       truth; see notify.py): what lease() walks
  <prefix>subscribed   set of members that have subscriptions: gc walks it
                       (a queue may have subscriptions without existing)
  <prefix>secret:<name>  string: a generated key (DataDriver.stored_secret)
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from urllib.parse import quote, unquote

NOTIFY_SUFFIXES = (":ns", ":no", ":ne", ":nu", ":nq", ":nd", ":nw", ":np", ":nx", ":nk")
QUEUE_SUFFIXES = (":q", ":i", ":f", ":e", ":m", ":b", ":c", ":ce", ":cl", ":d", ":dd",
                  *NOTIFY_SUFFIXES)
# Purge keeps the queue (:q), its sequence and the dead-letter receipts.
MESSAGE_SUFFIXES = (":i", ":f", ":e", ":m", ":b", ":c", ":ce", ":cl", ":d")
# How long (seconds) a deleted queue's sequence outlives it: a queue made
# again soon after goes on with higher ids (see scripts.DELETE_QUEUE).
SEQUENCE_GRACE = 86400


@lru_cache(maxsize=65536)
def _encode(text: str) -> str:
    return quote(text, safe="")


class Keys:
    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"the Redis key prefix must not hold braces: {prefix!r}")
        self.prefix = prefix
        self.all_queues = prefix + "queues"
        self.outbox = prefix + "outbox"
        self.subscribed = prefix + "subscribed"

    def member(self, project: str, queue: str) -> str:
        """The queue's name in the global set (and inside its hash tag)."""
        return f"{_encode(project)}/{_encode(queue)}"

    def queue_from_member(self, member: str) -> str:
        return f"{self.prefix}q:{{{member}}}"

    def queue(self, project: str, queue: str) -> str:
        """The base of every key of the queue; scripts add the suffixes."""
        return self.queue_from_member(self.member(project, queue))

    def secret(self, name: str) -> str:
        """A key kept with the data (DataDriver.stored_secret)."""
        return f"{self.prefix}secret:{name}"

    def project_index(self, project: str) -> str:
        return f"{self.prefix}p:{_encode(project)}"

    @staticmethod
    def names_of_member(member: str) -> tuple[str, str]:
        project, _, queue = member.partition("/")
        return unquote(project), unquote(queue)


@lru_cache(maxsize=65536)
def member_tag(member: str) -> str:
    """The member in base64url (no padding): the tail of delivery ids."""
    return base64.urlsafe_b64encode(member.encode()).rstrip(b"=").decode()


def member_of_tag(tag: str) -> str | None:
    """The member a delivery id's tail names; None for anything else."""
    if not tag or len(tag) > 4096:
        return None
    try:
        member = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    if "/" not in member or member_tag(member) != tag:
        return None
    return member
