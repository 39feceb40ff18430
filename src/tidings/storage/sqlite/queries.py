"""Every SQL statement of the SQLite driver, named."""

import functools

from tidings.storage.common.rows import MESSAGE_COLUMNS

QUEUE_ID = "SELECT id FROM queues WHERE project = ? AND name = ?"
ID_SCHEME = (
    "SELECT key, messages_below, subscriptions_below, deliveries_below FROM id_scheme"
)
QUEUE_METADATA = "SELECT metadata FROM queues WHERE project = ? AND name = ?"
QUEUE_INSERT = (
    "INSERT INTO queues (project, name, metadata, created) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (project, name) DO NOTHING"
)
QUEUE_SET_METADATA = "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?"
QUEUE_DELETE = "DELETE FROM queues WHERE id = ?"
QUEUE_LIST = (
    "SELECT name{detail} FROM queues WHERE project = ? AND name > ?{filters} "
    "ORDER BY name LIMIT ?"
)
QUEUE_COUNT = "SELECT count(*) FROM queues WHERE project = ?{filters}"
QUEUE_FILTER_NAME = " AND instr(name, ?) > 0"
# json_each, not a JSON path: a path cannot name a key holding a quote or a backslash.
QUEUE_FILTER_METADATA = (
    " AND EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND CAST(value AS TEXT) = ?)"
)

MESSAGE_INSERT = (
    "INSERT INTO messages (queue_id, body, created, expires, available, client_id) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


@functools.cache
def message_insert(rows: int) -> str:
    """MESSAGE_INSERT for ``rows`` rows in one statement."""
    return MESSAGE_INSERT + ", (?, ?, ?, ?, ?, ?)" * (rows - 1)

_MESSAGE_COLUMNS = MESSAGE_COLUMNS  # as message_from_row reads them
MESSAGE_PAGE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE queue_id = (SELECT id FROM queues WHERE project = ? AND name = ?) "
    "AND id > ? AND expires > ?{filters} ORDER BY id LIMIT ?"
)
MESSAGE_PAGE_NOT_CLAIMED = " AND claim_expires <= ?"
MESSAGE_PAGE_NOT_DELAYED = " AND available <= ?"
MESSAGE_PAGE_NOT_OWN = " AND client_id != ?"
MESSAGE_GET = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE id = ? AND expires > ? "
    "AND queue_id = (SELECT id FROM queues WHERE project = ? AND name = ?)"
)
MESSAGE_CLAIM_STATE = (
    "SELECT claim_id, claim_expires FROM messages "
    "WHERE id = ? AND queue_id = ? AND expires > ?"
)
MESSAGE_DELETE = "DELETE FROM messages WHERE id = ?"
# Redrive: a message with its claim, to move it under that claim.
MESSAGE_FOR_MOVE = (
    "SELECT body, created, expires, client_id, claim_id, claim_expires FROM messages "
    "WHERE id = ? AND queue_id = ? AND expires > ?"
)
MESSAGES_DELETE_OF_QUEUE = "DELETE FROM messages WHERE queue_id = ?"
MESSAGES_CLAIMABLE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE queue_id = ? AND claim_expires <= ? AND available <= ? AND expires > ? "
    "ORDER BY id LIMIT ?"
)
# The same after a floor: the rows up to it are known to be taken.
MESSAGES_CLAIMABLE_AFTER = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE queue_id = ? AND id > ? AND claim_expires <= ? AND available <= ? AND expires > ? "
    "ORDER BY id LIMIT ?"
)
MESSAGE_CLAIM = (
    "UPDATE messages SET claim_id = ?, claim_expires = ?, claim_count = claim_count + 1, "
    "expires = max(expires, ?) WHERE id = ?"
)
MESSAGE_MOVE = (
    "INSERT INTO messages (queue_id, body, created, expires, available, client_id) "
    "SELECT ?, body, ?, ?, ?, client_id FROM messages WHERE id = ?"
)

CLAIM_INSERT = (
    "INSERT INTO claims (id, queue_id, ttl, grace, created, expires) VALUES (?, ?, ?, ?, ?, ?)"
)
CLAIM_GET = (
    "SELECT id, ttl, grace, created FROM claims "
    "WHERE id = ? AND expires > ? "
    "AND queue_id = (SELECT id FROM queues WHERE project = ? AND name = ?)"
)
CLAIM_MESSAGES = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE claim_id = ? AND claim_expires > ? AND expires > ? ORDER BY id"
)
CLAIM_LIVE_IN_QUEUE = "SELECT 1 FROM claims WHERE id = ? AND queue_id = ? AND expires > ?"
CLAIM_RENEW = "UPDATE claims SET ttl = ?, grace = ?, created = ?, expires = ? WHERE id = ?"
CLAIM_RENEW_MESSAGES = (
    "UPDATE messages SET claim_expires = ?, expires = max(expires, ?) "
    "WHERE claim_id = ? AND claim_expires > ?"
)
CLAIM_RELEASE_MESSAGES = "UPDATE messages SET claim_id = NULL, claim_expires = 0 WHERE claim_id = ?"
CLAIM_DELETE = "DELETE FROM claims WHERE id = ?"
CLAIMS_DELETE_OF_QUEUE = "DELETE FROM claims WHERE queue_id = ?"

STATS_COUNTS = (
    "SELECT count(*), coalesce(sum(claim_expires > ?), 0) FROM messages "
    "WHERE queue_id = ? AND expires > ?"
)
STATS_OLDEST = (
    "SELECT id, created FROM messages WHERE queue_id = ? AND expires > ? ORDER BY id LIMIT 1"
)
STATS_NEWEST = (
    "SELECT id, created FROM messages WHERE queue_id = ? AND expires > ? ORDER BY id DESC LIMIT 1"
)

GC_EXPIRED_MESSAGES = (
    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE expires <= ? LIMIT ?)"
)
GC_EXPIRED_CLAIMS = "SELECT id FROM claims WHERE expires <= ? LIMIT ?"
MESSAGE_COUNTS_BY_QUEUE = (
    "SELECT q.project, q.name, count(m.id) FROM queues q "
    "LEFT JOIN messages m ON m.queue_id = q.id AND m.expires > ? "
    "GROUP BY q.id ORDER BY q.project, q.name LIMIT ?"
)

# --- subscriptions -----------------------------------------------------------

_SUBSCRIPTION_COLUMNS = "id, token, queue, subscriber, ttl, created, options, confirmed"
SUBSCRIPTION_INSERT = (
    "INSERT INTO subscriptions "
    "(token, project, queue, subscriber, ttl, created, expires, options, confirmed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SUBSCRIPTION_LIVE_BY_SUBSCRIBER = (
    f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions "
    "WHERE project = ? AND queue = ? AND subscriber = ? AND expires > ? LIMIT 1"
)
SUBSCRIPTION_GET = (
    f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions "
    "WHERE id = ? AND token = ? AND project = ? AND queue = ? AND expires > ?"
)
SUBSCRIPTION_OF_QUEUE = (
    "SELECT id FROM subscriptions WHERE id = ? AND token = ? AND project = ? AND queue = ?"
)
SUBSCRIPTION_PAGE = (
    f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions "
    "WHERE project = ? AND queue = ? AND id > ? AND expires > ? ORDER BY id LIMIT ?"
)
# {fields}: a comma-separated choice of the SUBSCRIPTION_SET_* fragments.
SUBSCRIPTION_UPDATE = "UPDATE subscriptions SET {fields} WHERE id = ?"
SUBSCRIPTION_SET_SUBSCRIBER = "subscriber = ?"
SUBSCRIPTION_SET_TTL = "ttl = ?, created = ?, expires = ?"
SUBSCRIPTION_SET_OPTIONS = "options = ?"
SUBSCRIPTION_CONFIRM = (
    "UPDATE subscriptions SET confirmed = ? "
    "WHERE id = ? AND token = ? AND project = ? AND queue = ? AND expires > ?"
)
SUBSCRIPTION_DELETE = "DELETE FROM subscriptions WHERE id = ?"
SUBSCRIPTIONS_DELETE_OF_QUEUE = "DELETE FROM subscriptions WHERE project = ? AND queue = ?"
# The post's one lookup: whom to notify (usually nobody). No ORDER BY: it
# would cost the post a sort even when nothing matches.
SUBSCRIPTIONS_TO_NOTIFY = (
    "SELECT id FROM subscriptions "
    "WHERE project = ? AND queue = ? AND expires > ? AND confirmed"
)
GC_EXPIRED_SUBSCRIPTIONS = "SELECT id FROM subscriptions WHERE expires <= ? LIMIT ?"

# --- deliveries --------------------------------------------------------------

DELIVERY_INSERT = (
    "INSERT INTO deliveries "
    "(token, subscription_id, kind, message, ttl, payload, created, due) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELIVERY_COLUMNS = (
    "d.id, d.token, d.kind, d.message, d.ttl, d.payload, d.attempts, d.created, d.status, "
    "d.last_error, s.id, s.token, s.project, s.queue, s.subscriber, s.options"
)
# Due pending deliveries in (due, id) order, through deliveries_by_due;
# LEFT JOIN keeps those whose subscription is gone, so the lease drops them.
DELIVERIES_DUE = (
    f"SELECT {_DELIVERY_COLUMNS}, s.expires FROM deliveries d "
    "LEFT JOIN subscriptions s ON s.id = d.subscription_id "
    "WHERE d.status = 0 AND d.due <= ? ORDER BY d.due, d.id LIMIT ?"
)
DELIVERY_LEASE = "UPDATE deliveries SET due = ? WHERE id = ?"
DELIVERY_DELETE_BY_ROWID = "DELETE FROM deliveries WHERE id = ?"
DELIVERY_DELETE = "DELETE FROM deliveries WHERE id = ? AND token = ?"
DELIVERY_RETRY = (
    "UPDATE deliveries SET attempts = attempts + 1, due = ?, last_error = ? "
    "WHERE id = ? AND token = ? AND status = 0"
)
# A dead delivery's due is when it died: gc's retention counts from there.
DELIVERY_DEAD = (
    "UPDATE deliveries SET attempts = attempts + 1, status = 1, due = ?, last_error = ? "
    "WHERE id = ? AND token = ? AND status = 0"
)
# CROSS JOIN keeps SQLite from walking every delivery in id order: it finds
# the queue's subscriptions first, then each one's deliveries by index.
DELIVERY_PAGE = (
    f"SELECT {_DELIVERY_COLUMNS} FROM subscriptions s "
    "CROSS JOIN deliveries d ON d.subscription_id = s.id "
    "WHERE s.project = ? AND s.queue = ? AND s.expires > ? "
    "AND d.status = ? AND d.id > ?{filters} ORDER BY d.id LIMIT ?"
)
DELIVERY_PAGE_OF_SUBSCRIPTION = " AND s.id = ? AND s.token = ?"
DELIVERIES_DELETE_OF_SUBSCRIPTION = "DELETE FROM deliveries WHERE subscription_id = ?"
DELIVERIES_DELETE_OF_QUEUE = (
    "DELETE FROM deliveries WHERE subscription_id IN "
    "(SELECT id FROM subscriptions WHERE project = ? AND queue = ?)"
)
GC_OLD_DEAD_DELIVERIES = (
    "DELETE FROM deliveries WHERE id IN "
    "(SELECT id FROM deliveries WHERE status = 1 AND due <= ? LIMIT ?)"
)
