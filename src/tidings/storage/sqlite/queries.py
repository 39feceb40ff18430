"""Every SQL statement of the SQLite driver, named."""

QUEUE_ID = "SELECT id FROM queues WHERE project = ? AND name = ?"
QUEUE_METADATA = "SELECT metadata FROM queues WHERE project = ? AND name = ?"
QUEUE_INSERT = (
    "INSERT INTO queues (project, name, metadata, created) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (project, name) DO NOTHING"
)
QUEUE_SET_METADATA = "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?"
QUEUE_DELETE = "DELETE FROM queues WHERE id = ?"
QUEUE_LIST = "SELECT name{detail} FROM queues WHERE project = ? AND name > ?{filters} ORDER BY name LIMIT ?"
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
LAST_ROWID = "SELECT last_insert_rowid()"
_MESSAGE_COLUMNS = "id, body, created, expires, claim_id, claim_expires, claim_count"
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
MESSAGES_DELETE_OF_QUEUE = "DELETE FROM messages WHERE queue_id = ?"
MESSAGES_CLAIMABLE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE queue_id = ? AND claim_expires <= ? AND available <= ? AND expires > ? "
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
STATS_OLDEST = "SELECT id, created FROM messages WHERE queue_id = ? AND expires > ? ORDER BY id LIMIT 1"
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
