"""Every SQL statement of the PostgreSQL driver, named.

Conventions:

- Time is never read in SQL (no now(), no clock_timestamp()): the driver
  passes its clock's reading as a parameter, so a test's fake clock rules
  expiry exactly as it does for every other driver. Times are float8 Unix
  seconds, as in the SQLite driver.
- Bodies and metadata are bytea holding their exact JSON encoding: jsonb
  (and the json operators) reject the \\u0000 escape, which a message body
  may carry. Queue metadata also keeps a jsonb copy of its top-level values
  as text, made by the driver, for listing filters.
- Queue rows are the per-queue lock: whoever adds messages to a queue
  (a post, a dead-letter move) first takes its row FOR NO KEY UPDATE, so
  message ids, drawn from one sequence, become visible in id order within
  a queue and a reader's marker never skips a message committed late.
"""

from tidings.storage.common.rows import MESSAGE_COLUMNS

# A random part of public subscription and delivery ids (8 hex digits).
_TOKEN = "substr(md5(random()::text), 1, 8)"

# The public id codec's key and thresholds (storage/common/ids.py).
ID_SCHEME = "SELECT key, messages_below, subscriptions_below, deliveries_below FROM id_scheme"

# --- queues ---------------------------------------------------------------

QUEUE_ID = "SELECT id FROM queues WHERE project = $1 AND name = $2"
# Taken before adding messages to the queue (see the module docstring).
QUEUE_LOCK = "SELECT id FROM queues WHERE project = $1 AND name = $2 FOR NO KEY UPDATE"
# Taken before deleting the queue: waits for posts in flight, so their
# messages are deleted too rather than left behind without a queue.
QUEUE_LOCK_FOR_DELETE = "SELECT id FROM queues WHERE project = $1 AND name = $2 FOR UPDATE"
# --- watch leases ---------------------------------------------------------
#
# A post NOTIFYs only while some process watches its queue (a long poll
# waits on it). A NOTIFY is not free: PostgreSQL holds one lock for the
# whole cluster from the NOTIFY's commit until its WAL is flushed, so the
# posts of several server processes commit one at a time, and it signals
# every LISTEN connection, each of which then reads the notification queue
# (BENCHMARKS.md measured it). A watching process holds a lease on the
# queue's row, watched_until, in the database's clock: it takes it before
# its first read and renews it while it waits (postgres/watch_leases.py).
# The post reads watched_until from the row it has locked, and the lease
# is taken by an UPDATE of that row, which waits for that lock: a post
# either commits before the lease (the watcher's read then finds its
# messages) or sees the lease and NOTIFYs. A queue that does not exist
# yet cannot be leased, so a new queue starts watched for
# NEW_QUEUE_WATCHED_SECONDS, longer than a watcher of a missing queue waits
# before it tries again (MISSING_QUEUE_RETRY_SECONDS).
WATCH_LEASE_SECONDS = 30.0
NEW_QUEUE_WATCHED_SECONDS = 3.0
MISSING_QUEUE_RETRY_SECONDS = 1.0
# $1/$2 the queue, $3 the lease's length. One row if the queue exists:
# whether the lease had lapsed (no process's lease covered now), in which
# case a post may have gone without a NOTIFY.
QUEUE_WATCH_LEASE = """
    UPDATE queues SET watched_until = greatest(queues.watched_until,
                                               extract(epoch FROM now()) + $3::float8)
    FROM (SELECT id, watched_until FROM queues WHERE project = $1 AND name = $2
          FOR NO KEY UPDATE) AS before
    WHERE queues.id = before.id
    RETURNING before.watched_until < extract(epoch FROM now()) AS lapsed
"""
QUEUE_INSERT = (
    "INSERT INTO queues (project, name, metadata, metadata_filter, created, watched_until) "
    "VALUES ($1::text, $2::text, $3::bytea, $4::jsonb, $5::float8, "
    f"extract(epoch FROM now()) + {NEW_QUEUE_WATCHED_SECONDS}) "
    "ON CONFLICT (project, name) DO NOTHING RETURNING id"
)
QUEUE_METADATA = "SELECT metadata FROM queues WHERE project = $1 AND name = $2"
QUEUE_SET_METADATA = (
    "UPDATE queues SET metadata = $3, metadata_filter = $4::jsonb "
    "WHERE project = $1 AND name = $2"
)
QUEUE_DELETE = "DELETE FROM queues WHERE id = $1"
# $4: a name substring or NULL (strpos, not LIKE: "_" and "%" are literal);
# $5: the metadata filters as a jsonb object, '{}' matching every queue.
QUEUE_LIST = (
    "SELECT name, CASE WHEN $3::boolean THEN metadata END FROM queues "
    "WHERE project = $1 AND name > $2::text "
    "AND ($4::text IS NULL OR strpos(name, $4) > 0) AND metadata_filter @> $5::jsonb "
    "ORDER BY name LIMIT $6::integer"
)
QUEUE_COUNT = (
    "SELECT count(*) FROM queues WHERE project = $1 "
    "AND ($2::text IS NULL OR strpos(name, $2) > 0) AND metadata_filter @> $3::jsonb"
)
# One statement, so the counts and the oldest/newest share one snapshot.
QUEUE_STATS = """
    WITH live AS MATERIALIZED (
        SELECT m.id, m.created, m.claim_expires FROM messages m
        WHERE m.queue_id = (SELECT id FROM queues WHERE project = $1 AND name = $2)
        AND m.expires > $3::float8
    )
    SELECT (SELECT count(*) FROM live) AS total,
           (SELECT count(*) FROM live WHERE claim_expires > $3::float8) AS claimed,
           o.id AS oldest_id, o.created AS oldest_created,
           n.id AS newest_id, n.created AS newest_created
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT id, created FROM live ORDER BY id LIMIT 1) o ON true
    LEFT JOIN LATERAL (SELECT id, created FROM live ORDER BY id DESC LIMIT 1) n ON true
"""

# --- messages -------------------------------------------------------------

_MESSAGE_COLUMNS = MESSAGE_COLUMNS  # as message_from_row reads them

# Posts to one or more queues in one statement, each queue's messages all
# or none, behind the queue's row lock (see the module docstring): $1/$2
# the queues' projects and names, $3 each queue's NOTIFY payload (NULL:
# none), $4 now, then per message $5 its queue (a 1-based index into
# $1/$2), $6 client id (the posts of several clients share a statement,
# postgres/writer.py), $7 body, $8 ttl, $9 delay; $10 the NOTIFY channel
# (NULL: notifications off); a queue NOTIFYs only while watched (see
# "watch leases" above). pg_notify is delivered at commit, and repeats
# of one payload in a transaction are delivered once. The rows come back
# in id order, with their queue's index and whether the queue has live
# subscribers. A queue that does not exist posts nothing (the caller
# creates it and posts again). Two forms, by how a locked queue row is met.
def _post_messages(lock: str, lock_timeout_ms: int = 0) -> str:
    # A bounded wait for the rows: lock_timeout set for this statement's
    # own transaction (is_local), by a subquery the scan evaluates once,
    # before LockRows takes the first row.
    bounded = (f"WHERE (SELECT set_config('lock_timeout', '{lock_timeout_ms}ms', true)) "
               "IS NOT NULL" if lock_timeout_ms else "")
    return f"""
    WITH keys AS (
        SELECT k.project, k.name, k.payload, k.n
        FROM unnest($1::text[], $2::text[], $3::text[])
                WITH ORDINALITY AS k(project, name, payload, n)
    ), q AS MATERIALIZED (
        SELECT queues.id, keys.n, keys.project, keys.name, keys.payload,
               queues.watched_until
        FROM queues JOIN keys ON queues.project = keys.project AND queues.name = keys.name
        {bounded}
        ORDER BY queues.id
        {lock}
    ), ins AS (
        INSERT INTO messages (queue_id, body, created, expires, available, client_id)
        SELECT q.id, m.body, $4::float8, $4::float8 + m.ttl, $4::float8 + m.delay, m.client_id
        FROM unnest($5::integer[], $6::text[], $7::bytea[], $8::integer[], $9::integer[])
                WITH ORDINALITY AS m(k, client_id, body, ttl, delay, n)
        JOIN q ON q.n = m.k
        ORDER BY m.n
        RETURNING id, queue_id, body, round(expires - created)::integer AS ttl
    ), subs AS MATERIALIZED (
        -- The outbox, in the same statement: one delivery per live,
        -- confirmed subscription and message. FOR KEY SHARE holds off a
        -- concurrent delete of the subscription until we commit, so it
        -- then deletes our deliveries too. No subscription: one index
        -- probe per queue that finds nothing, and "delivered" says so (no
        -- need to wake the delivery worker).
        SELECT s.seq, q.id AS queue_id, q.project, q.name
        FROM subscriptions s JOIN q ON s.project = q.project AND s.queue = q.name
        WHERE s.confirmed AND s.expires > $4::float8
        FOR KEY SHARE OF s
    ), outbox AS (
        INSERT INTO deliveries (token, subscription_seq, project, queue, kind, message_id, body,
                                ttl, created, next_attempt)
        SELECT {_TOKEN}, subs.seq, subs.project, subs.name, 'message', ins.id, ins.body,
               ins.ttl, $4::float8, $4::float8
        FROM ins JOIN subs ON subs.queue_id = ins.queue_id
        ORDER BY ins.id, subs.seq
    )
    SELECT ins.id, q.n AS key,
           CASE WHEN $10::text IS NOT NULL AND q.payload IS NOT NULL
                     AND q.watched_until >= extract(epoch FROM now())
                THEN pg_notify($10, q.payload) END AS notified,
           EXISTS (SELECT 1 FROM subs WHERE subs.queue_id = ins.queue_id) AS delivered
    FROM ins JOIN q ON q.id = ins.queue_id ORDER BY ins.id
"""


# Waits for each queue's row lock (the module docstring's rule): a post to
# one queue, or a move that holds its queue's lock already.
MESSAGES_POST = _post_messages("FOR NO KEY UPDATE OF queues")
# Posts of several queues at once (postgres/writer.py) skip a queue whose
# row another transaction holds: that queue's posts then wait for it in
# MESSAGES_POST_WAITING's statement (or on their own), so one busy or
# long-locked queue never holds up the others' posts.
MESSAGES_POST_SKIP_LOCKED = _post_messages("FOR NO KEY UPDATE OF queues SKIP LOCKED")
# The posts of the queues another process kept busy (postgres/writer.py's
# waiting lane): they wait for the rows, in id order as every statement
# here takes several (so two of them never deadlock), but for at most
# lock_timeout_ms (then LockNotAvailable, and each queue goes on its own):
# a queue being deleted or purged holds its row for as long as that takes.
def messages_post_waiting(lock_timeout_ms: int) -> str:
    return _post_messages("FOR NO KEY UPDATE OF queues", lock_timeout_ms)


# $5/$6/$7: include claimed / include delayed / a client id to leave out.
MESSAGE_PAGE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE queue_id = (SELECT id FROM queues WHERE project = $1 AND name = $2) "
    "AND id > $3::bigint AND expires > $4::float8 "
    "AND ($5::boolean OR claim_expires <= $4) "
    "AND ($6::boolean OR available <= $4) "
    "AND ($7::text IS NULL OR client_id <> $7) "
    "ORDER BY id LIMIT $8::integer"
)
MESSAGES_GET = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE id = ANY($1::bigint[]) AND expires > $2::float8 "
    "AND queue_id = (SELECT id FROM queues WHERE project = $3 AND name = $4)"
)
# Whether message m may go, now being $now and d.claim_id the delete's
# claim id: with none, m must not be under an active claim; with one, it
# must be under exactly that claim.
def _deletable(now: str) -> str:
    return (f"m.expires > {now}::float8 "
            f"AND CASE WHEN d.claim_id IS NULL THEN m.claim_expires <= {now} "
            f"ELSE m.claim_id = d.claim_id AND m.claim_expires > {now} END")


# Deletes, in one statement, those of the messages ($1) of one queue that
# may go ($5: a claim id per message). It waits for a message another
# transaction holds. For a message not deleted, MESSAGE_CLAIM_STATE says why.
MESSAGE_DELETE_CHECKED = (
    "DELETE FROM messages m USING unnest($1::bigint[], $5::text[]) AS d(id, claim_id) "
    "WHERE m.id = d.id "
    "AND m.queue_id = (SELECT id FROM queues WHERE project = $3 AND name = $4) "
    f"AND {_deletable('$2')} "
    "RETURNING m.id"
)
# The same for the messages of several queues (postgres/writer.py): $1
# ids, $2 claim ids, $3 each one's queue (a 1-based index into the
# projects $4 and names $5), $6 now. A message another transaction holds
# is skipped, not waited for: it comes back with deleted false (its delete
# then goes on its own). A message not deleted for another reason (claimed,
# gone, of another queue) does not come back.
MESSAGES_DELETE_SKIP_LOCKED = f"""
    WITH d AS (
        SELECT d.id, d.claim_id, queues.id AS queue_id
        FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS d(id, claim_id, k)
        JOIN unnest($4::text[], $5::text[]) WITH ORDINALITY AS k(project, name, n) ON k.n = d.k
        JOIN queues ON queues.project = k.project AND queues.name = k.name
    ), free AS MATERIALIZED (
        SELECT m.id FROM messages m JOIN d ON m.id = d.id AND m.queue_id = d.queue_id
        FOR UPDATE OF m SKIP LOCKED
    ), gone AS (
        DELETE FROM messages m USING d
        WHERE m.id = d.id AND m.id IN (SELECT id FROM free) AND {_deletable('$6')}
        RETURNING m.id
    )
    SELECT id, true AS deleted FROM gone
    UNION ALL
    SELECT d.id, false FROM d JOIN messages m ON m.id = d.id AND m.queue_id = d.queue_id
    WHERE d.id NOT IN (SELECT id FROM free)
"""
MESSAGE_CLAIM_STATE = (
    "SELECT id, claim_id, claim_expires FROM messages "
    "WHERE id = ANY($1::bigint[]) AND expires > $2::float8 "
    "AND queue_id = (SELECT id FROM queues WHERE project = $3 AND name = $4)"
)
# Bulk delete locks the rows it checks, so no claim lands between the
# check and the delete (all or none).
MESSAGE_CLAIM_STATE_FOR_DELETE = MESSAGE_CLAIM_STATE + " ORDER BY id FOR UPDATE"
MESSAGES_DELETE_IDS = "DELETE FROM messages WHERE id = ANY($1::bigint[])"
# Redrive: the messages to move with their claims, locked until the move
# commits (so no claim or delete lands in between).
MESSAGES_FOR_MOVE = (
    "SELECT id, body, created, expires, client_id, claim_id, claim_expires FROM messages "
    "WHERE id = ANY($1::bigint[]) AND expires > $2::float8 "
    "AND queue_id = (SELECT id FROM queues WHERE project = $3 AND name = $4) "
    "ORDER BY id FOR UPDATE"
)
MESSAGES_DELETE_OF_QUEUE = "DELETE FROM messages WHERE queue_id = $1"
MESSAGES_POP = f"""
    DELETE FROM messages WHERE id IN (
        SELECT id FROM messages
        WHERE queue_id = (SELECT id FROM queues WHERE project = $1 AND name = $2)
        AND claim_expires <= $3::float8 AND available <= $3::float8 AND expires > $3::float8
        ORDER BY id LIMIT $4::integer
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {_MESSAGE_COLUMNS}
"""

# --- claims ---------------------------------------------------------------

# Claimable messages, oldest first; rows other transactions are claiming
# or deleting are skipped rather than waited for.
MESSAGES_CLAIMABLE = f"""
    SELECT {_MESSAGE_COLUMNS}, queue_id FROM messages
    WHERE queue_id = (SELECT id FROM queues WHERE project = $1 AND name = $2)
    AND claim_expires <= $3::float8 AND available <= $3::float8 AND expires > $3::float8
    ORDER BY id LIMIT $4::integer
    FOR UPDATE SKIP LOCKED
"""
# $1 claim id, $2 claim expiry, $3 keep messages alive until, $4 ids.
MESSAGES_MARK_CLAIMED = f"""
    UPDATE messages
    SET claim_id = $1::text, claim_expires = $2::float8, claim_count = claim_count + 1,
        expires = greatest(expires, $3::float8)
    WHERE id = ANY($4::bigint[])
    RETURNING {_MESSAGE_COLUMNS}
"""
# Claims without a dead-letter policy, several at once, of one or more
# queues (postgres/writer.py groups the concurrent claims of a process):
# one statement picks in each queue (SKIP LOCKED, FIFO) as many messages as
# its claims ask for together, deals them out in request order (the first
# claim the oldest, each at most its limit, none to two claims), records
# each claim that got one and marks its messages. $1/$2 the queues'
# projects and names, $3 now (the latest of the claims'); one array
# element per claim: $4 its queue (a 1-based index into $1/$2), $5 claim
# id, $6 limit, $7 claim expiry, $8 keep-alive, $9 ttl, $10 grace, $11
# its own now. It waits for no lock: messages another transaction holds
# are skipped, and a queue's row is not locked.
CLAIMS_CREATE = """
    WITH req AS (
        SELECT r.k, r.claim_id, r.expires, r.keep_until, r.ttl, r.grace, r.now,
               sum(r.lim) OVER (PARTITION BY r.k ORDER BY r.n) - r.lim AS after, r.lim
        FROM unnest($4::integer[], $5::text[], $6::integer[], $7::float8[], $8::float8[],
                    $9::integer[], $10::integer[], $11::float8[]) WITH ORDINALITY
             AS r(k, claim_id, lim, expires, keep_until, ttl, grace, now, n)
    ), keys AS (
        SELECT queues.id AS queue_id, k.n,
               (SELECT sum(req.lim) FROM req WHERE req.k = k.n) AS wanted
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(project, name, n)
        JOIN queues ON queues.project = k.project AND queues.name = k.name
    ), picked AS MATERIALIZED (
        SELECT p.id, p.queue_id, keys.n AS k,
               row_number() OVER (PARTITION BY keys.n ORDER BY p.id) AS rank
        FROM keys CROSS JOIN LATERAL (
            SELECT id, queue_id FROM messages
            WHERE queue_id = keys.queue_id
            AND claim_expires <= $3::float8 AND available <= $3::float8
            AND expires > $3::float8
            -- queue_id first, as in the index messages_by_queue: without it
            -- the planner may walk the primary key through other queues.
            ORDER BY queue_id, id LIMIT keys.wanted
            FOR UPDATE SKIP LOCKED
        ) AS p
    ), dealt AS MATERIALIZED (
        SELECT picked.id, picked.queue_id, req.claim_id, req.expires, req.keep_until,
               req.ttl, req.grace, req.now
        FROM picked JOIN req ON req.k = picked.k
             AND picked.rank > req.after AND picked.rank <= req.after + req.lim
    ), claim AS (
        INSERT INTO claims (id, queue_id, ttl, grace, created, expires)
        SELECT DISTINCT ON (claim_id) claim_id, queue_id, ttl, grace, now, expires FROM dealt
    )
    UPDATE messages m
    SET claim_id = d.claim_id, claim_expires = d.expires, claim_count = m.claim_count + 1,
        expires = greatest(m.expires, d.keep_until)
    FROM dealt d WHERE m.id = d.id
    RETURNING m.id, m.body, m.created, m.expires, m.claim_id, m.claim_expires, m.claim_count
"""
CLAIM_INSERT = (
    "INSERT INTO claims (id, queue_id, ttl, grace, created, expires) "
    "VALUES ($1::text, $2::bigint, $3::integer, $4::integer, $5::float8, $6::float8)"
)
# A dead-letter move: the message leaves its queue and joins the dead
# letter queue ($1) under a new id, so observers paging the DLQ by marker
# see it. $3 NULL keeps the message's own expiry.
MESSAGES_MOVE = """
    WITH gone AS (
        DELETE FROM messages WHERE id = ANY($4::bigint[])
        RETURNING id, body, expires, client_id
    )
    INSERT INTO messages (queue_id, body, created, expires, available, client_id)
    SELECT $1::bigint, body, $2::float8, coalesce($3::float8, expires), $2::float8, client_id
    FROM gone ORDER BY id
"""
# The claim and its live messages in one statement (one snapshot); a claim
# without messages yields one row with NULL message columns.
CLAIM_GET = """
    SELECT c.id AS claim_id_, c.ttl, c.grace, c.created AS claim_created,
           m.id, m.body, m.created, m.expires, m.claim_id, m.claim_expires, m.claim_count
    FROM claims c
    LEFT JOIN messages m
        ON m.claim_id = c.id AND m.claim_expires > $2::float8 AND m.expires > $2::float8
    WHERE c.id = $1::text AND c.expires > $2::float8
    AND c.queue_id = (SELECT id FROM queues WHERE project = $3 AND name = $4)
    ORDER BY m.id
"""
# Renew a live claim and its messages from now ($4); no row: no such claim.
CLAIM_RENEW = """
    WITH c AS (
        UPDATE claims SET ttl = $2::integer, grace = $3::integer, created = $4::float8,
            expires = $5::float8
        WHERE id = $1::text AND expires > $4::float8
        AND queue_id = (SELECT id FROM queues WHERE project = $7 AND name = $8)
        RETURNING id
    ), m AS (
        UPDATE messages SET claim_expires = $5::float8, expires = greatest(expires, $6::float8)
        WHERE claim_id = $1::text AND claim_expires > $4::float8 AND EXISTS (SELECT 1 FROM c)
    )
    SELECT count(*) FROM c
"""
# Release: live or expired, the claim goes and its messages are free.
CLAIM_DELETE = """
    WITH c AS (
        DELETE FROM claims WHERE id = $1::text
        AND queue_id = (SELECT id FROM queues WHERE project = $2 AND name = $3)
        RETURNING id
    )
    UPDATE messages SET claim_id = NULL, claim_expires = 0
    WHERE claim_id = $1 AND EXISTS (SELECT 1 FROM c)
"""
CLAIMS_DELETE_OF_QUEUE = "DELETE FROM claims WHERE queue_id = $1"

# --- subscriptions --------------------------------------------------------

# Public ids are (seq, token): every statement that takes one matches both,
# and the project and queue, so an id never resolves anywhere else.
_SUBSCRIPTION_COLUMNS = "seq, token, queue, subscriber, ttl, options, confirmed, started"

# $1 project, $2 queue, $3 subscriber, $4 ttl, $5 options, $6 confirmed,
# $7 now. An expired row of the same subscriber goes first (with its
# deliveries), so only a live one makes the insert a duplicate (no row).
# The insert reads `stale`, so the delete has run when it checks the index.
SUBSCRIPTION_CREATE = f"""
    WITH stale AS (
        DELETE FROM subscriptions
        WHERE project = $1 AND queue = $2 AND subscriber = $3 AND expires <= $7::float8
        RETURNING seq
    ), stale_deliveries AS (
        DELETE FROM deliveries WHERE subscription_seq IN (SELECT seq FROM stale)
    )
    INSERT INTO subscriptions (token, project, queue, subscriber, ttl, options, confirmed,
                               started, expires)
    SELECT {_TOKEN}, $1::text, $2::text, $3::text, $4::integer, $5::bytea, $6::boolean,
           $7::float8, $7::float8 + $4::integer
    FROM (SELECT count(*) FROM stale) AS made_room
    ON CONFLICT (project, queue, subscriber) DO NOTHING
    RETURNING seq, token
"""
# $1 seq, $2 token, $3 project, $4 queue, $5 now.
SUBSCRIPTION_GET = f"""
    SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions
    WHERE seq = $1::bigint AND token = $2::text AND project = $3 AND queue = $4
    AND expires > $5::float8
"""
SUBSCRIPTION_FIND = f"""
    SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions
    WHERE project = $1 AND queue = $2 AND subscriber = $3 AND expires > $4::float8
"""
# $3: the marker's seq (0 for none); whether or not it still exists, it
# marks a place.
SUBSCRIPTION_LIST = f"""
    SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions
    WHERE project = $1 AND queue = $2 AND seq > $3::bigint AND expires > $4::float8
    ORDER BY seq LIMIT $5::integer
"""
# $6 subscriber, $7 ttl, $8 options: NULL leaves the field as it is. A new
# subscriber first clears an expired row holding it (as in create); one
# held by a live row raises unique_violation (Conflict). No row: no such
# live subscription.
SUBSCRIPTION_UPDATE = """
    WITH stale AS (
        DELETE FROM subscriptions
        WHERE $6::text IS NOT NULL AND project = $3 AND queue = $4 AND subscriber = $6::text
        AND expires <= $5::float8 AND seq <> $1::bigint
        RETURNING seq
    ), stale_deliveries AS (
        DELETE FROM deliveries WHERE subscription_seq IN (SELECT seq FROM stale)
    )
    UPDATE subscriptions SET
        subscriber = coalesce($6::text, subscriber),
        ttl = coalesce($7::integer, ttl),
        started = CASE WHEN $7::integer IS NULL THEN started ELSE $5::float8 END,
        expires = CASE WHEN $7::integer IS NULL THEN expires ELSE $5::float8 + $7::integer END,
        options = coalesce($8::bytea, options)
    WHERE seq = $1::bigint AND token = $2::text AND project = $3 AND queue = $4
    AND expires > $5::float8 AND (SELECT count(*) FROM stale) >= 0
    RETURNING seq
"""
SUBSCRIPTION_CONFIRM = """
    UPDATE subscriptions SET confirmed = $6::boolean
    WHERE seq = $1::bigint AND token = $2::text AND project = $3 AND queue = $4
    AND expires > $5::float8
    RETURNING seq
"""
# Live or expired. Its deliveries go in the next statement of the same
# transaction: the DELETE waits for posts holding the row (FOR KEY SHARE),
# and the next statement's snapshot sees the deliveries they committed.
SUBSCRIPTION_DELETE = """
    DELETE FROM subscriptions
    WHERE seq = $1::bigint AND token = $2::text AND project = $3 AND queue = $4
    RETURNING seq
"""
DELIVERIES_DELETE_OF_SUBSCRIPTIONS = (
    "DELETE FROM deliveries WHERE subscription_seq = ANY($1::bigint[])"
)
# Deleting a queue deletes its subscriptions and their deliveries.
SUBSCRIPTIONS_DELETE_OF_QUEUE = (
    "DELETE FROM subscriptions WHERE project = $1 AND queue = $2 RETURNING seq"
)
DELIVERIES_DELETE_OF_QUEUE = "DELETE FROM deliveries WHERE project = $1 AND queue = $2"

# --- deliveries -------------------------------------------------------------

_DELIVERY_COLUMNS = (
    "d.seq, d.token, d.project, d.queue, d.subscription_seq, s.token AS subscription_token, "
    "s.subscriber, s.options, d.kind, d.message_id, d.body, d.ttl, d.attempts, d.created, "
    "d.status, d.last_error, d.next_attempt"
)

# $1 seq, $2 token, $3 project, $4 queue (the live subscription), $5 now,
# $6 kind, $7 payload. No row: no such live subscription. FOR KEY SHARE,
# as in MESSAGES_POST, so a concurrent delete also deletes this delivery.
DELIVERY_ENQUEUE = f"""
    INSERT INTO deliveries (token, subscription_seq, project, queue, kind, body, created,
                            next_attempt)
    SELECT {_TOKEN}, s.seq, s.project, s.queue, $6::text, $7::bytea, $5::float8, $5::float8
    FROM (
        SELECT seq, project, queue FROM subscriptions
        WHERE seq = $1::bigint AND token = $2::text AND project = $3 AND queue = $4
        AND expires > $5::float8
        FOR KEY SHARE
    ) AS s
    RETURNING seq, token
"""
# $1 now, $2 limit, $3 lease until. Due, pending, unleased deliveries of
# live subscriptions, oldest due first; rows another worker is leasing are
# skipped rather than waited for, and one whose lease it has just
# committed no longer qualifies when rechecked.
DELIVERY_LEASE = f"""
    WITH picked AS MATERIALIZED (
        SELECT d.seq FROM deliveries d
        WHERE d.status = 'pending' AND d.next_attempt <= $1::float8
        AND d.lease_until <= $1::float8
        AND EXISTS (
            SELECT 1 FROM subscriptions s
            WHERE s.seq = d.subscription_seq AND s.expires > $1::float8
        )
        ORDER BY d.status, d.next_attempt, d.seq
        LIMIT $2::integer
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE deliveries d SET lease_until = $3::float8
    FROM picked, subscriptions s
    WHERE d.seq = picked.seq AND s.seq = d.subscription_seq
    RETURNING {_DELIVERY_COLUMNS}
"""
DELIVERY_DELIVERED = "DELETE FROM deliveries WHERE seq = $1::bigint AND token = $2::text"
# $3 due at, $4 error. The lease is released.
DELIVERY_RETRY = """
    UPDATE deliveries SET attempts = attempts + 1, next_attempt = $3::float8, lease_until = 0,
        last_error = $4::text
    WHERE seq = $1::bigint AND token = $2::text AND status = 'pending'
"""
# $3 now (kept in next_attempt: when it died), $4 error.
DELIVERY_DEAD = """
    UPDATE deliveries SET attempts = attempts + 1, status = 'dead', next_attempt = $3::float8,
        lease_until = 0, last_error = $4::text
    WHERE seq = $1::bigint AND token = $2::text AND status = 'pending'
"""
# $1 project, $2 queue, $3 status, $4 after seq, $5 limit.
DELIVERY_LIST = f"""
    SELECT {_DELIVERY_COLUMNS} FROM deliveries d
    JOIN subscriptions s ON s.seq = d.subscription_seq
    WHERE d.project = $1 AND d.queue = $2 AND d.status = $3::text AND d.seq > $4::bigint
    ORDER BY d.seq LIMIT $5::integer
"""
# The same for one subscription: $6 its seq, $7 its token.
DELIVERY_LIST_OF_SUBSCRIPTION = f"""
    SELECT {_DELIVERY_COLUMNS} FROM deliveries d
    JOIN subscriptions s ON s.seq = d.subscription_seq
    WHERE d.subscription_seq = $6::bigint AND s.token = $7::text
    AND s.project = $1 AND s.queue = $2
    AND d.status = $3::text AND d.seq > $4::bigint
    ORDER BY d.seq LIMIT $5::integer
"""

# --- garbage collection and health -----------------------------------------

GC_EXPIRED_MESSAGES = """
    DELETE FROM messages WHERE id IN (
        SELECT id FROM messages WHERE expires <= $1::float8 LIMIT $2::integer
        FOR UPDATE SKIP LOCKED
    )
"""
GC_EXPIRED_CLAIMS = """
    WITH c AS (
        DELETE FROM claims WHERE id IN (
            SELECT id FROM claims WHERE expires <= $1::float8 LIMIT $2::integer
            FOR UPDATE SKIP LOCKED
        )
        RETURNING id
    ), m AS (
        UPDATE messages SET claim_id = NULL, claim_expires = 0
        WHERE claim_id = ANY(ARRAY(SELECT id FROM c))
    )
    SELECT count(*) FROM c
"""
# Expired subscriptions, a batch at a time; their deliveries follow in
# the next statement (DELIVERIES_DELETE_OF_SUBSCRIPTIONS), as for a delete.
GC_EXPIRED_SUBSCRIPTIONS = """
    DELETE FROM subscriptions WHERE seq IN (
        SELECT seq FROM subscriptions WHERE expires <= $1::float8 LIMIT $2::integer
        FOR UPDATE SKIP LOCKED
    )
    RETURNING seq
"""
# Dead deliveries that died at or before $1 (a dead one's next_attempt).
GC_DEAD_DELIVERIES = """
    DELETE FROM deliveries WHERE seq IN (
        SELECT seq FROM deliveries WHERE status = 'dead' AND next_attempt <= $1::float8
        LIMIT $2::integer
        FOR UPDATE SKIP LOCKED
    )
"""
PING = "SELECT 1"
# At most $2 queues, each counted up to $3 messages: a health check must
# stay cheap with millions of messages.
MESSAGE_COUNTS_BY_QUEUE = """
    SELECT q.project, q.name,
           (SELECT count(*) FROM (
                SELECT 1 FROM messages m
                WHERE m.queue_id = q.id AND m.expires > $1::float8 LIMIT $3::integer
            ) s) AS messages
    FROM queues q ORDER BY q.project, q.name LIMIT $2::integer
"""


# --- the bus (DataDriver.publish / listen) ----------------------------------------
# $1 channel, $2 payload (base64 text).
BUS_NOTIFY = "SELECT pg_notify($1::text, $2::text)"
# $1 channel, $2 payload (bytea). Announces "@<row id>"; drops old rows.
BUS_PUBLISH_LARGE = """
    WITH old AS (
        DELETE FROM bus_messages WHERE created < now() - interval '5 minutes'
    ), stored AS (
        INSERT INTO bus_messages (payload) VALUES ($2::bytea) RETURNING id
    )
    SELECT pg_notify($1::text, '@' || id::text) FROM stored
"""
BUS_MESSAGE = "SELECT payload FROM bus_messages WHERE id = $1::bigint"


# --- secrets ----------------------------------------------------------------

# The first writer wins; every caller then reads what won.
SECRET_INSERT = ("INSERT INTO secrets (name, value, created) VALUES ($1, $2, $3) "
                 "ON CONFLICT (name) DO NOTHING")
SECRET_GET = "SELECT value FROM secrets WHERE name = $1"
