"""The Lua scripts, named.

Each script touches the keys of one queue only (KEYS[1] is the queue's key
base, see keys.py; the other keys share its hash tag), so it is atomic and
runs unchanged on Redis Cluster. The one exception is CLAIM's local
dead-letter move, given the dead letter queue's base as KEYS[2] only when
both queues share a slot (always, on a single server).

Time is ARGV[1], the driver's clock, never Redis TIME: tests drive a fake
clock, and every server of a deployment agrees with its own clock anyway.

A message record (:m) is a msgpack array:
  {created, expires, available, claim_count, claim_id, claim_expires, client_id}
claim_id is '' when unclaimed; a claim is active while claim_expires > now.
A claim record (:c) is {ttl, grace, created, expires, {message ids}}.

The sources are in lua/, by controller; this module names and runs them.
A script takes of the shared libraries (lua/library.py) only the functions
and constants it uses, directly or through each other: every function a
script defines costs redis-server time on each run, and the unused ones
of LIB were 12 % of a single delete's instructions
(scripts/bench_redis_instructions.py).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from redis.exceptions import NoScriptError

from tidings.storage.redis.lua.claims import (
    CLAIM,
    CLAIM_DELETE,
    CLAIM_GET,
    CLAIM_UPDATE,
    DEAD_LETTER_DONE,
    DEAD_LETTER_PUT,
    DEAD_LETTER_TAKE,
)
from tidings.storage.redis.lua.library import LIB, NOTIFY_LIB
from tidings.storage.redis.lua.messages import DELETE, GET, LIST, POP, POST, POST_NOTIFY
from tidings.storage.redis.lua.notify import (
    DELIVERY_DEAD,
    DELIVERY_DONE,
    DELIVERY_ENQUEUE,
    DELIVERY_LEASE,
    DELIVERY_LIST,
    DELIVERY_RELEASE,
    DELIVERY_RETRY,
    NOTIFY_GC,
    NSEQ_RESERVE,
    SUB_CONFIRM,
    SUB_CREATE,
    SUB_DELETE,
    SUB_FIND,
    SUB_GET,
    SUB_LIST,
    SUB_UPDATE,
)
from tidings.storage.redis.lua.queues import CREATE_QUEUE, DELETE_QUEUE, GC, SET_METADATA, STATS


class Script:
    """One Lua script, run by EVALSHA with a fallback to EVAL.

    Not redis-py's register_script: EVAL on a NOSCRIPT reply loads the
    script on whichever Cluster node owns the key, with no SCRIPT LOAD
    broadcast to get wrong.
    """

    def __init__(self, name: str, source: str, *, writes: bool = True) -> None:
        self.name = name
        # Whether a client's change rides on it: ``?replicas=N`` waits for
        # replicas after these only (a listing tidies expired claims, but
        # nothing a client was told about depends on that write).
        self.writes = writes
        self.source = f"-- tidings: {name}\n{source}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


_LIBRARIES = (LIB, NOTIFY_LIB)
# A library's top-level definitions: `local function name` or `local a, b =`.
_DEFINITION = re.compile(r"^local function (\w+)|^local ((?:\w+,\s*)*\w+)\s*=", re.M)


def _units(library: str) -> list[tuple[list[str], str]]:
    """The library's parts (separated by blank lines: one function or
    constant each, with its comment) and the names each defines."""
    units = []
    for text in re.split(r"\n[ \t]*\n", library.strip()):
        names = [name for function, variables in _DEFINITION.findall(text)
                 for name in ([function] if function else re.split(r",\s*", variables))]
        units.append((names, text))
    return units


# Each library split once, not once for every script that takes it.
_LIBRARY_UNITS = {library: _units(library) for library in _LIBRARIES}


def _uses(code: str, names: list[str]) -> bool:
    return any(re.search(rf"\b{name}\b", code) for name in names)


def _script(name: str, *parts: str, writes: bool = True) -> Script:
    """The script of ``parts`` in their order, each library among them cut
    to what the others use. A name in a comment counts as a use: a unit
    too many costs a little time, one too few a failing script."""
    code = "\n".join(part for part in parts if part not in _LIBRARIES)
    units = {part: _LIBRARY_UNITS[part] for part in parts if part in _LIBRARIES}
    taken: set[tuple[str, int]] = set()
    grew = True
    while grew:  # a taken unit may use others
        grew = False
        for library, library_units in units.items():
            for i, (names, text) in enumerate(library_units):
                if (library, i) not in taken and _uses(code, names):
                    taken.add((library, i))
                    code += "\n" + text
                    grew = True
    source = [
        "\n\n".join(text for i, (_, text) in enumerate(units[part]) if (part, i) in taken)
        if part in units else part
        for part in parts
    ]
    return Script(name, "\n".join(source), writes=writes)


post = _script("post", LIB, POST, NOTIFY_LIB, POST_NOTIFY)
list_messages = _script("list", LIB, LIST, writes=False)
get = _script("get", LIB, GET, writes=False)
delete = _script("delete", LIB, DELETE)
pop = _script("pop", LIB, POP)
claim = _script("claim", LIB, CLAIM)
claim_get = _script("claim_get", LIB, CLAIM_GET, writes=False)
claim_update = _script("claim_update", LIB, CLAIM_UPDATE)
claim_delete = _script("claim_delete", LIB, CLAIM_DELETE)
stats = _script("stats", LIB, STATS, writes=False)
create_queue = _script("create_queue", CREATE_QUEUE)
set_metadata = _script("set_metadata", SET_METADATA)
delete_queue = _script("delete_queue", DELETE_QUEUE)
gc = _script("gc", LIB, GC)
dead_letter_take = _script("dead_letter_take", LIB, DEAD_LETTER_TAKE)
dead_letter_put = _script("dead_letter_put", LIB, DEAD_LETTER_PUT)
dead_letter_done = _script("dead_letter_done", DEAD_LETTER_DONE)
sub_create = _script("sub_create", NOTIFY_LIB, SUB_CREATE)
nseq_reserve = _script("nseq_reserve", NOTIFY_LIB, NSEQ_RESERVE)
sub_get = _script("sub_get", NOTIFY_LIB, SUB_GET, writes=False)
sub_find = _script("sub_find", NOTIFY_LIB, SUB_FIND, writes=False)
sub_list = _script("sub_list", NOTIFY_LIB, SUB_LIST, writes=False)
sub_update = _script("sub_update", NOTIFY_LIB, SUB_UPDATE)
sub_confirm = _script("sub_confirm", NOTIFY_LIB, SUB_CONFIRM)
sub_delete = _script("sub_delete", NOTIFY_LIB, SUB_DELETE)
delivery_enqueue = _script("delivery_enqueue", NOTIFY_LIB, DELIVERY_ENQUEUE)
delivery_lease = _script("delivery_lease", NOTIFY_LIB, DELIVERY_LEASE)
delivery_release = _script("delivery_release", NOTIFY_LIB, DELIVERY_RELEASE)
delivery_done = _script("delivery_done", NOTIFY_LIB, DELIVERY_DONE)
delivery_retry = _script("delivery_retry", NOTIFY_LIB, DELIVERY_RETRY)
delivery_dead = _script("delivery_dead", NOTIFY_LIB, DELIVERY_DEAD)
delivery_list = _script("delivery_list", NOTIFY_LIB, DELIVERY_LIST, writes=False)
notify_gc = _script("notify_gc", NOTIFY_LIB, NOTIFY_GC)
