"""Dead letters: the events a task gave up on, kept in Redis until an operator replays them.

A task that fails for good (its retries exhausted, or an error it does not
retry) would acknowledge its message and lose the event for that task. A
dicombus worker pushes a :class:`DeadLetter` instead (see
``dicombus_workers.dead_letter``):

- the Redis list ``dicombus:dead:<task name>`` holds the task's dead letters
  as JSON, oldest first (RPUSH);
- the set :data:`TASKS_KEY` names the tasks that have any, so listing them
  never scans the keyspace (which holds a marker per event for idempotency).

Both change together, in one MULTI/EXEC or one script. They live in the
broker's Redis, which a node runs with ``appendonly yes``: a dead letter is
as durable as the messages it came from. ``dicombus dead-letters`` lists
them and replays them to their task's queue with the same event id, so a
task that already handled the event (idempotent by event id) does nothing
twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from dicombus.protocol.errors import DicombusError

KEY_PREFIX = "dicombus:dead:"
TASKS_KEY = "dicombus:dead-letter-tasks"
FORMAT = 1

# KEYS: the task's list, TASKS_KEY. ARGV: the entry as stored, the task name.
# Removes one entry and forgets the task once its list is empty, in one step,
# so a dead letter pushed meanwhile never leaves its task unlisted.
_REMOVE = """
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return removed
"""


class DeadLetterError(DicombusError, ValueError):
    """An entry of a dead-letter list is not a dead letter this version can read."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event a task gave up on, and why."""

    task: str  # the Celery task name
    queue: str  # the queue its messages go to: a replay goes there
    envelope: dict[str, Any]  # the event, as the task received it
    error: str  # "ExceptionType: message" of the last attempt
    attempts: int  # runs of the task, the first included
    time: str  # when it gave up, RFC 3339 UTC
    traceback: str = ""

    @property
    def event_id(self) -> str:
        return str(self.envelope.get("id", ""))

    @property
    def event_type(self) -> str:
        return str(self.envelope.get("type", ""))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise DeadLetterError(f"not JSON: {exc}") from exc
        if not isinstance(found, Mapping) or found.get("format") != FORMAT:
            raise DeadLetterError(f"not a dead letter of format {FORMAT}")
        try:
            letter = cls(**{key: value for key, value in found.items() if key != "format"})
        except TypeError as exc:
            raise DeadLetterError(str(exc)) from exc
        if not (isinstance(letter.task, str) and letter.task and isinstance(letter.queue, str)):
            raise DeadLetterError("'task' and 'queue' must be names")
        if not isinstance(letter.envelope, dict):
            raise DeadLetterError("'envelope' must be a JSON object")
        return letter


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter and the exact bytes it is stored as (what removing it matches)."""

    raw: bytes | str  # as the client returned it (str with decode_responses=True)
    letter: DeadLetter


def key_for(task: str) -> str:
    return f"{KEY_PREFIX}{task}"


def push(client: redis.Redis, letter: DeadLetter) -> None:
    """Append ``letter`` to its task's list and name the task in :data:`TASKS_KEY`."""
    with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key_for(letter.task), letter.to_json())
        pipe.sadd(TASKS_KEY, letter.task)
        pipe.execute()


def tasks(client: redis.Redis) -> list[str]:
    """The tasks that have dead letters, sorted."""
    members: set[bytes | str] = client.smembers(TASKS_KEY)
    # bytes, or str from a client made with decode_responses=True
    return sorted(m.decode() if isinstance(m, bytes) else m for m in members)


def count(client: redis.Redis, task: str) -> int:
    return int(client.llen(key_for(task)))


def read(client: redis.Redis, task: str) -> tuple[list[StoredLetter], list[str]]:
    """The task's dead letters, oldest first, and a description of each unreadable entry."""
    entries: list[bytes | str] = client.lrange(key_for(task), 0, -1)
    letters: list[StoredLetter] = []
    problems: list[str] = []
    for position, raw in enumerate(entries, 1):
        try:
            letters.append(StoredLetter(raw, DeadLetter.from_json(raw)))
        except DeadLetterError as exc:
            problems.append(f"{key_for(task)} entry {position}: {exc}")
    return letters, problems


def remove(client: redis.Redis, stored: StoredLetter) -> bool:
    """Remove one stored dead letter; False if it was no longer there."""
    task = stored.letter.task
    removed = client.eval(_REMOVE, 2, key_for(task), TASKS_KEY, stored.raw, task)
    return bool(removed)


def purge(client: redis.Redis, task: str) -> int:
    """Delete every dead letter of ``task``; how many there were."""
    with client.pipeline(transaction=True) as pipe:
        pipe.llen(key_for(task))
        pipe.delete(key_for(task))
        pipe.srem(TASKS_KEY, task)
        found, _, _ = pipe.execute()
    return int(found)
