"""The delivery store: one row per (SOP Instance UID, destination), and what became of it.

An SQLite file in the routing worker's data folder (``routing.sqlite3``), in WAL mode, so
the worker's senders, its Celery task and ``dicombus routes`` use it at once. It is the
delivery queue itself: a routing task records what is to be sent, and the destination's
senders take due rows from it. A row's ``state``:

- ``held``: routed ``per = "study"``, waiting for its study to be complete: released (to
  ``waiting``) when STUDY_STABLE fires for it, so the whole study goes in one batch; or
  routed by a rule with its own ``quiet_seconds`` (in the row's context), released when its
  study or series has had no new instance for that long (:meth:`DeliveryStore.release_quiet`);
- ``waiting``: to be sent at ``due`` (now, or after a back-off delay: retries are kept here,
  not as Celery ETA messages, which Redis would hand out twice past the visibility timeout);
- ``sending``: taken by the sender process ``claimed_by``; a row whose process is gone goes
  back to ``waiting`` when a sender looks for work;
- ``acknowledged``: the destination answered Success (or an accepted Warning): never sent
  again, whatever is replayed;
- ``dead``: a dead letter, with its ``reason``, until ``dicombus routes retry`` replays it;
- ``replayed``: a dead letter replayed to another destination (kept for the record).

The primary key makes adding idempotent: a redelivered task or a replayed event adds rows
that are already there, and changes nothing.

The same file keeps study completeness (the ``studies``, ``series`` and ``study_instances``
tables): when each study's and series' last new instance arrived, and when STUDY_STABLE last
fired for it, so a restarted router neither forgets a study nor fires it twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from dicombus.sqlite_setup import create_schema, switch_to_wal

STORE_NAME = "routing.sqlite3"
# How long an SQLite call waits for another process's write lock before it fails.
BUSY_TIMEOUT = 30.0
# A claim older than this is taken back even if its process still exists (a sender hung,
# or a process id reused): longer than any association of one batch should last.
CLAIM_LEASE = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    stored_path TEXT NOT NULL,
    event_id TEXT NOT NULL,
    context TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    status INTEGER,
    reason TEXT,
    claimed_by INTEGER,
    claimed_at REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (sop_instance_uid, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, state, due);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    stable_at REAL,
    fired INTEGER NOT NULL DEFAULT 0,
    context TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_quiet ON studies (last_seen);
CREATE INDEX IF NOT EXISTS studies_unfired ON studies (last_seen)
    WHERE stable_at IS NULL OR stable_at < last_seen;
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (state) WHERE state = 'held';
CREATE TABLE IF NOT EXISTS series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_quiet ON series (last_seen);
CREATE TABLE IF NOT EXISTS study_instances (
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, sop_instance_uid)
);
CREATE TABLE IF NOT EXISTS breakers (
    destination TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    opened REAL,
    probe_due REAL
);
"""


class State(StrEnum):
    HELD = "held"
    WAITING = "waiting"
    SENDING = "sending"
    ACKNOWLEDGED = "acknowledged"
    DEAD = "dead"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRequest:
    """An instance to send to a destination, as a routing task records it.

    ``context`` carries what the routing events report (rule, per, unit UID, study, patient,
    calling AE, source edge): JSON, kept as is.
    """

    sop_instance_uid: str
    destination: str
    sop_class_uid: str
    transfer_syntax: str
    stored_path: str
    event_id: str
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "destination": self.destination,
            "sop_class_uid": self.sop_class_uid,
            "transfer_syntax": self.transfer_syntax,
            "stored_path": self.stored_path,
            "event_id": self.event_id,
            "context": self.context,
        }

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> DeliveryRequest:
        missing = [key for key in _REQUEST_KEYS if not isinstance(found.get(key), str)]
        if missing:
            raise ValueError(f"a delivery request without {', '.join(missing)}")
        context = found.get("context") or {}
        if not isinstance(context, dict):
            raise ValueError("a delivery request's context is a JSON object")
        return cls(**{key: found[key] for key in _REQUEST_KEYS}, context=context)


_REQUEST_KEYS = (
    "sop_instance_uid",
    "destination",
    "sop_class_uid",
    "transfer_syntax",
    "stored_path",
    "event_id",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A row of the store."""

    request: DeliveryRequest
    state: State
    attempts: int
    due: float
    status: int | None
    reason: str | None
    updated: float

    @property
    def sop_instance_uid(self) -> str:
        return self.request.sop_instance_uid

    @property
    def destination(self) -> str:
        return self.request.destination

    def dead_letter_json(self) -> dict[str, Any]:
        """The row as ``dicombus routes failed --json`` and the dashboard show it."""
        return {
            "destination": self.destination,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.request.sop_class_uid,
            "status": self.status,
            "reason": self.reason,
            "attempts": self.attempts,
            "updated": datetime.fromtimestamp(self.updated, UTC).isoformat(),
            "event_id": self.request.event_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """A study as the router saw it arrive (``context``: patient, accession, edge)."""

    study_instance_uid: str
    first_seen: float
    last_seen: float
    stable_at: float | None
    fired: int
    instances: int
    series: int
    context: dict[str, Any]

    @property
    def is_stable(self) -> bool:
        """STUDY_STABLE fired for it, and no new instance came since."""
        return self.stable_at is not None and self.stable_at >= self.last_seen


@dataclass(frozen=True, slots=True)
class Breaker:
    """A destination's circuit breaker: consecutive failures, and when it opened."""

    failures: int = 0
    opened: float | None = None
    probe_due: float | None = None

    @property
    def is_open(self) -> bool:
        return self.opened is not None


def store_path(data_dir: Path) -> Path:
    return data_dir / STORE_NAME


class DeliveryStore:
    """The store in ``path`` (made with its folder if missing). One connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []

    @property
    def db(self) -> sqlite3.Connection:
        # Per thread: a connection has one transaction at a time, and a worker's senders,
        # study watch and Celery task each run their own (on one connection, one thread's
        # BEGIN fails inside another's transaction, and its reads see the other's
        # uncommitted rows). Per process too: a connection must not cross a fork (a prefork
        # pool's children make their own).
        found: tuple[int, sqlite3.Connection] | None = getattr(self._local, "connection", None)
        if found is None or found[0] != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Threads and processes that first use a new store together each set their
            # connection up; dicombus.sqlite_setup keeps them from refusing each other.
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            switch_to_wal(connection, BUSY_TIMEOUT)
            # NORMAL in WAL: a commit survives a crash of the process (what a SIGKILLed
            # worker needs); a power cut may lose the last commits, which are then sent
            # again: at least once, never lost.
            connection.execute("PRAGMA synchronous=NORMAL")
            create_schema(connection, _SCHEMA)
            found = (os.getpid(), connection)
            with self._lock:
                self._connections.append(found)
            self._local.connection = found
        return found[1]

    def close(self) -> None:
        """Close this process's connections (every thread's: call it when they are done)."""
        with self._lock:
            mine = [c for pid, c in self._connections if pid == os.getpid()]
            self._connections.clear()
        for connection in mine:
            connection.close()
        self._local = threading.local()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        # IMMEDIATE: take the write lock first, so two senders never claim the same rows.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- recording what is to be sent --

    def add(self, requests: Iterable[DeliveryRequest], *, now: float | None = None) -> int:
        """Record ``requests`` due now; those already recorded stay as they are. Returns
        how many were new."""
        moment = time.time() if now is None else now
        requests = list(requests)
        with self._transaction() as db:
            stable = _stable_studies(db, [r for r in requests if r.context.get("per") == "study"])
            quiet = _quiet_units(db, requests, moment)
            rows = [
                (
                    r.sop_instance_uid,
                    r.destination,
                    _first_state(r, stable, quiet).value,
                    r.sop_class_uid,
                    r.transfer_syntax,
                    r.stored_path,
                    r.event_id,
                    json.dumps(r.context, separators=(",", ":")),
                    moment,
                    moment,
                    moment,
                )
                for r in requests
            ]
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (sop_instance_uid, destination, state, "
                "sop_class_uid, transfer_syntax, stored_path, event_id, context, due, created, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    # -- taking and settling work --

    def claim(self, destination: str, limit: int, *, now: float | None = None) -> list[Delivery]:
        """Take up to ``limit`` due rows of ``destination`` for this process, oldest first."""
        moment = time.time() if now is None else now
        with self._transaction() as db:
            self._take_back_stale_claims(db, destination, moment)
            found = db.execute(
                f"SELECT {_COLUMNS} FROM deliveries WHERE destination = ? AND state = ? "
                "AND due <= ? ORDER BY due, created LIMIT ?",
                (destination, State.WAITING.value, moment, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET state = ?, claimed_by = ?, claimed_at = ? "
                "WHERE sop_instance_uid = ? AND destination = ?",
                [(State.SENDING.value, os.getpid(), moment, row[0], destination) for row in found],
            )
        return [_delivery(row, State.SENDING) for row in found]

    def _take_back_stale_claims(
        self, db: sqlite3.Connection, destination: str, moment: float
    ) -> None:
        claims = db.execute(
            "SELECT DISTINCT claimed_by, MIN(claimed_at) FROM deliveries "
            "WHERE destination = ? AND state = ? GROUP BY claimed_by",
            (destination, State.SENDING.value),
        ).fetchall()
        for pid, claimed_at in claims:
            if _process_alive(pid) and moment - claimed_at < CLAIM_LEASE:
                continue
            # Its process died mid-batch (SIGKILL, power cut): what it had not recorded as
            # acknowledged is sent again, at once and without counting an attempt.
            db.execute(
                "UPDATE deliveries SET state = ?, claimed_by = NULL, claimed_at = NULL "
                "WHERE destination = ? AND state = ? AND claimed_by IS ?",
                (State.WAITING.value, destination, State.SENDING.value, pid),
            )

    def acknowledge(self, delivery: Delivery, status: int) -> None:
        self._settle(delivery, State.ACKNOWLEDGED, status=status, reason=None)

    def retry_later(
        self, delivery: Delivery, *, due: float, status: int | None, reason: str
    ) -> None:
        self._settle(delivery, State.WAITING, status=status, reason=reason, due=due, attempt=True)

    def dead_letter(self, delivery: Delivery, *, status: int | None, reason: str) -> None:
        self._settle(delivery, State.DEAD, status=status, reason=reason, attempt=True)

    def put_back(self, deliveries: Sequence[Delivery]) -> None:
        """Return claimed rows not settled yet to waiting, without an attempt (left out of
        the batch, or the batch failed)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET state = ?, claimed_by = NULL, claimed_at = NULL "
                "WHERE sop_instance_uid = ? AND destination = ? AND state = ?",
                [
                    (State.WAITING.value, d.sop_instance_uid, d.destination, State.SENDING.value)
                    for d in deliveries
                ],
            )

    def _settle(
        self,
        delivery: Delivery,
        state: State,
        *,
        status: int | None,
        reason: str | None,
        due: float | None = None,
        attempt: bool = False,
    ) -> None:
        moment = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, status = ?, reason = ?, due = COALESCE(?, due), "
                "attempts = attempts + ?, claimed_by = NULL, claimed_at = NULL, updated = ? "
                "WHERE sop_instance_uid = ? AND destination = ?",
                (
                    state.value,
                    status,
                    reason,
                    due,
                    int(attempt),
                    moment,
                    delivery.sop_instance_uid,
                    delivery.destination,
                ),
            )

    def next_due(self, destination: str) -> float | None:
        """When the earliest waiting row of ``destination`` is due (None: nothing waits)."""
        row = self.db.execute(
            "SELECT MIN(due) FROM deliveries WHERE destination = ? AND state = ?",
            (destination, State.WAITING.value),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- what the operator sees and does --

    def deliveries(
        self, *, state: State | None = None, destination: str | None = None
    ) -> list[Delivery]:
        where, values = _filter(state, destination)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM deliveries {where} ORDER BY updated, sop_instance_uid",
            values,
        ).fetchall()
        return [_delivery(row) for row in rows]

    def replay(
        self, uids: Sequence[str] | None, *, to: str | None = None, destination: str | None = None
    ) -> list[Delivery]:
        """Send dead letters again: those of ``uids`` (None: all, of ``destination`` if given),
        to their destination or to ``to``. Returns the dead letters replayed.

        To another destination a new row is added, unless that destination already has the
        instance acknowledged (it is not sent twice there); the dead letter is kept as
        ``replayed``."""
        moment = time.time()
        with self._transaction() as db:
            where, values = _filter(State.DEAD, destination)
            found = [
                _delivery(row)
                for row in db.execute(f"SELECT {_COLUMNS} FROM deliveries {where}", values)
                if uids is None or row[0] in uids
            ]
            for dead in found:
                if to is None or to == dead.destination:
                    db.execute(
                        "UPDATE deliveries SET state = ?, attempts = 0, due = ?, updated = ? "
                        "WHERE sop_instance_uid = ? AND destination = ?",
                        (
                            State.WAITING.value,
                            moment,
                            moment,
                            dead.sop_instance_uid,
                            dead.destination,
                        ),
                    )
                    continue
                r = dead.request
                db.execute(
                    "INSERT INTO deliveries (sop_instance_uid, destination, state, sop_class_uid, "
                    "transfer_syntax, stored_path, event_id, context, due, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET "
                    "state = excluded.state, attempts = 0, due = excluded.due, "
                    "updated = excluded.updated WHERE state != ?",
                    (
                        r.sop_instance_uid,
                        to,
                        State.WAITING.value,
                        r.sop_class_uid,
                        r.transfer_syntax,
                        r.stored_path,
                        r.event_id,
                        json.dumps({**r.context, "replayed_from": dead.destination}),
                        moment,
                        moment,
                        moment,
                        State.ACKNOWLEDGED.value,
                    ),
                )
                db.execute(
                    "UPDATE deliveries SET state = ?, reason = ?, updated = ? "
                    "WHERE sop_instance_uid = ? AND destination = ?",
                    (
                        State.REPLAYED.value,
                        f"{dead.reason}; replayed to {to}",
                        moment,
                        dead.sop_instance_uid,
                        dead.destination,
                    ),
                )
        return found

    # -- study completeness --

    def saw_instance(
        self,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
        context: dict[str, Any],
        *,
        now: float | None = None,
    ) -> bool:
        """Record that the edge stored an instance of the study; True when it is new to the
        study (a replayed event changes nothing, and does not make the study late)."""
        moment = time.time() if now is None else now
        with self._transaction() as db:
            before = db.total_changes
            db.execute(
                "INSERT OR IGNORE INTO study_instances VALUES (?, ?, ?)",
                (study_instance_uid, sop_instance_uid, series_instance_uid),
            )
            if db.total_changes == before:
                return False
            db.execute(
                "INSERT INTO studies (study_instance_uid, first_seen, last_seen, context) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (study_instance_uid) DO UPDATE SET "
                "last_seen = MAX(last_seen, excluded.last_seen), context = excluded.context",
                (study_instance_uid, moment, moment, json.dumps(context, separators=(",", ":"))),
            )
            db.execute(
                "INSERT INTO series VALUES (?, ?, ?) ON CONFLICT (series_instance_uid) "
                "DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                (series_instance_uid, study_instance_uid, moment),
            )
            return True

    def quiet_studies(self, quiet: float, *, now: float | None = None) -> list[Study]:
        """Studies with no new instance for ``quiet`` seconds whose STUDY_STABLE is due (never
        fired, or late instances came after it fired)."""
        moment = time.time() if now is None else now
        rows = self.db.execute(
            f"SELECT {_STUDY_COLUMNS} FROM studies s WHERE last_seen <= ? "
            "AND (stable_at IS NULL OR stable_at < last_seen) ORDER BY last_seen",
            (moment - quiet,),
        ).fetchall()
        return [_study(row) for row in rows]

    def study(self, study_instance_uid: str) -> Study | None:
        row = self.db.execute(
            f"SELECT {_STUDY_COLUMNS} FROM studies s WHERE study_instance_uid = ?",
            (study_instance_uid,),
        ).fetchone()
        return None if row is None else _study(row)

    def study_stable(self, study: Study, *, now: float | None = None) -> int:
        """Record that STUDY_STABLE fired for ``study`` (as read by :meth:`quiet_studies`) and
        release its held deliveries, at once; returns how many were released. A study that
        got a new instance meanwhile is not marked (it is not quiet any more), nor one that
        another watcher (a second router) marked first: 0."""
        moment = time.time() if now is None else now
        with self._transaction() as db:
            marked = db.execute(
                "UPDATE studies SET stable_at = ?, fired = fired + 1 "
                "WHERE study_instance_uid = ? AND last_seen = ? "
                "AND (stable_at IS NULL OR stable_at < last_seen)",
                (max(moment, study.last_seen), study.study_instance_uid, study.last_seen),
            ).rowcount
            if not marked:
                return 0
            return db.execute(
                "UPDATE deliveries SET state = ?, due = ?, updated = ? WHERE state = ? "
                "AND json_extract(context, '$.study_instance_uid') = ? "
                "AND json_extract(context, '$.quiet_seconds') IS NULL",
                (
                    State.WAITING.value,
                    moment,
                    moment,
                    State.HELD.value,
                    study.study_instance_uid,
                ),
            ).rowcount

    def release_quiet(self, *, now: float | None = None) -> int:
        """Release the held deliveries of rules with their own ``quiet_seconds`` whose study
        or series has had no new instance for that long; returns how many."""
        moment = time.time() if now is None else now
        with self._transaction() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'waiting', due = ?, updated = ? "
                f"WHERE state = 'held' AND {_QUIET} IS NOT NULL AND {_UNIT_LAST_SEEN} <= ?",
                (moment, moment, moment),
            ).rowcount

    def next_quiet(
        self,
        study_quiet: float,
        rule_quiets: Mapping[str, Iterable[float]],
        *,
        now: float | None = None,
    ) -> float | None:
        """When a study or series next becomes quiet: the earliest STUDY_STABLE due (after
        ``study_quiet``), or the earliest moment after ``now`` a study (``rule_quiets
        ["study"]``) or series (``["series"]``) has been quiet for one of the rules' own
        quiet times. None: nothing to wait for."""
        moment = time.time() if now is None else now
        db = self.db
        (unfired,) = db.execute(
            "SELECT MIN(last_seen) FROM studies WHERE stable_at IS NULL OR stable_at < last_seen"
        ).fetchone()
        found = [] if unfired is None else [unfired + study_quiet]
        for table, quiets in rule_quiets.items():
            if table not in _UNIT_TABLES:
                raise ValueError(f"no quiet time per {table!r}")
            for quiet in quiets:
                (earliest,) = db.execute(
                    f"SELECT MIN(last_seen) FROM {_UNIT_TABLES[table]} WHERE last_seen > ?",
                    (moment - quiet,),
                ).fetchone()
                if earliest is not None:
                    found.append(earliest + quiet)
        return min(found, default=None)

    # -- the circuit breaker --

    def breaker(self, destination: str) -> Breaker:
        row = self.db.execute(
            "SELECT failures, opened, probe_due FROM breakers WHERE destination = ?",
            (destination,),
        ).fetchone()
        return Breaker() if row is None else Breaker(*row)

    def set_breaker(self, destination: str, breaker: Breaker) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (destination, failures, opened, probe_due) "
                "VALUES (?, ?, ?, ?)",
                (destination, breaker.failures, breaker.opened, breaker.probe_due),
            )


_COLUMNS = (
    "sop_instance_uid, destination, sop_class_uid, transfer_syntax, stored_path, event_id, "
    "context, state, attempts, due, status, reason, updated"
)


def _delivery(row: Sequence[Any], state: State | None = None) -> Delivery:
    request = DeliveryRequest(
        sop_instance_uid=row[0],
        destination=row[1],
        sop_class_uid=row[2],
        transfer_syntax=row[3],
        stored_path=row[4],
        event_id=row[5],
        context=json.loads(row[6]),
    )
    return Delivery(
        request=request,
        state=state or State(row[7]),
        attempts=row[8],
        due=row[9],
        status=row[10],
        reason=row[11],
        updated=row[12],
    )


_STUDY_COLUMNS = (
    "study_instance_uid, first_seen, last_seen, stable_at, fired, context, "
    "(SELECT COUNT(*) FROM study_instances i WHERE i.study_instance_uid = s.study_instance_uid), "
    "(SELECT COUNT(DISTINCT series_instance_uid) FROM study_instances i "
    "WHERE i.study_instance_uid = s.study_instance_uid)"
)


def _study(row: Sequence[Any]) -> Study:
    return Study(
        study_instance_uid=row[0],
        first_seen=row[1],
        last_seen=row[2],
        stable_at=row[3],
        fired=row[4],
        context=json.loads(row[5]),
        instances=row[6],
        series=row[7],
    )


def _stable_studies(db: sqlite3.Connection, requests: Sequence[DeliveryRequest]) -> set[str]:
    """Which studies of the (per-study) ``requests`` are stable now."""
    uids = {str(r.context.get("study_instance_uid")) for r in requests}
    stable = set()
    for uid in uids:
        row = db.execute(
            "SELECT 1 FROM studies WHERE study_instance_uid = ? AND stable_at IS NOT NULL "
            "AND stable_at >= last_seen",
            (uid,),
        ).fetchone()
        if row is not None:
            stable.add(uid)
    return stable


def _quiet_units(
    db: sqlite3.Connection, requests: Sequence[DeliveryRequest], moment: float
) -> set[tuple[str, float]]:
    """The (unit UID, quiet time) of the ``requests`` with their own quiet time whose unit
    (study or series) has been quiet that long at ``moment``, as
    :meth:`DeliveryStore.release_quiet` decides."""
    quiet = set()
    for r in requests:
        seconds, unit = r.context.get("quiet_seconds"), r.context.get("unit_uid")
        table = _UNIT_TABLES.get(str(r.context.get("per")))
        if seconds is None or table is None:
            continue
        row = db.execute(
            f"SELECT last_seen FROM {table} WHERE {_UNIT_KEYS[table]} = ?", (unit,)
        ).fetchone()
        if row is None or row[0] + float(seconds) <= moment:
            quiet.add((str(unit), float(seconds)))
    return quiet


# Where the last new instance of a unit (a rule's ``per``) is recorded, and when.
_UNIT_TABLES = {"study": "studies", "series": "series"}
_UNIT_KEYS = {"studies": "study_instance_uid", "series": "series_instance_uid"}
_QUIET = "json_extract(context, '$.quiet_seconds')"
# A unit the completeness tables do not know (no Study or Series Instance UID): quiet.
_UNIT_LAST_SEEN = (
    "COALESCE(CASE json_extract(context, '$.per') WHEN 'study' THEN (SELECT last_seen FROM "
    "studies WHERE study_instance_uid = json_extract(deliveries.context, '$.unit_uid')) "
    "ELSE (SELECT last_seen FROM series "
    "WHERE series_instance_uid = json_extract(deliveries.context, '$.unit_uid')) END, 0) "
    f"+ {_QUIET}"
)


def _first_state(
    request: DeliveryRequest, stable: set[str], quiet: set[tuple[str, float]]
) -> State:
    """A request of a rule with its own quiet time waits until its unit is quiet for it; a
    per-study request otherwise waits for its study's STUDY_STABLE, unless it fired already
    and no instance came since (the router records the instance before it routes it, so a
    request of a unit still arriving always finds it not quiet, not stable)."""
    context = request.context
    seconds = context.get("quiet_seconds")
    if seconds is not None:
        unit = (str(context.get("unit_uid")), float(seconds))
        return State.WAITING if unit in quiet else State.HELD
    if context.get("per") != "study" or context.get("study_instance_uid") in stable:
        return State.WAITING
    return State.HELD


def _filter(state: State | None, destination: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, values = [], []
    if state is not None:
        clauses.append("state = ?")
        values.append(state.value)
    if destination is not None:
        clauses.append("destination = ?")
        values.append(destination)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(values)


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
