"""The edge's publisher: captured events to Celery task messages in Redis, never blocking DICOM.

Path of one event::

    association thread       publisher thread              publisher child process    Redis
    ------------------       ----------------              -----------------------    -----
    submit(pending) --put_nowait--> batch of up to
          |                  batch_size events, routed
          |                  to their subscribers -socket-> to_envelope() once per event
          |                        ^                        one Celery message per task
          |                        '--------- answer ------ one pipelined publish ---> LPUSH
          |                  (no child ready: the thread builds and publishes itself)
          | queue full             | broker error: this batch
          v                        v and all queued after it
    outbox (SQLite) <--------------+
          '------- replayed oldest first once Redis answers ----------------------> LPUSH

``submit`` runs on association threads. It never touches the network: the
event goes onto a bounded in-memory queue (``put_nowait``). Only when that
queue is full (Redis slow and the publisher ``queue_size`` events behind) is the
event built and written to the outbox on the calling thread: a local SQLite
insert, whose cost docs/bus.md gives.

The publisher thread takes events off the queue in batches and hands each
batch to its sender: by default a child process
(:mod:`dicombus.bus.publisher_child`), so that the CPU this costs is not taken
from the association threads; with ``publisher_process=False``, or while no
child is ready, the publisher thread itself (:mod:`dicombus.bus.sender`). The sender builds
each envelope once and, per subscribed task, a Celery protocol-2 task message
from a template that Celery's own ``app.amqp.as_task_v2`` made (JSON, args
``[envelope]``, kwargs ``{}``), and publishes the batch over one kept Redis
connection as one pipeline of one LPUSH per queue. Retries in redis-py are off:
the outbox owns durability.
On any broker error the batch goes to the outbox and the thread switches to
replay mode: it keeps moving whatever is queued into the outbox (so association
threads do not find the queue full), pings Redis with bounded back-off and,
once Redis answers, replays the outbox oldest first, deleting rows only after
Redis took them; then it publishes directly again.

Delivery is at least once. A batch that failed half-way may be partly in Redis
and is replayed whole; a replayed message is identical, with the task id
:func:`dicombus.bus.sender.task_id_for` derives from (event id, task name), so a task that
deduplicates on its id (or on the event id) runs once.

Order. Events are numbered as they are submitted and the outbox replays by that
number. Before each replayed chunk the publisher moves the queue into the
outbox, and it reads the chunk again if an association thread spooled an event
itself meanwhile (that thread's earlier events may still have been queued). So
each association's events (submitted one after another by its thread) reach
every queue in sequence order.

Durability across a kill. An event given to :meth:`Publisher.submit_durable`
(a C-STORE answered Success: :mod:`dicombus.bus.capture`) is first committed
to the :class:`~dicombus.bus.journal.Journal`; the publisher forgets it there
once it is in Redis or the outbox, and :meth:`Publisher.resubmit_journaled`
submits what a killed run left, with the same event ids. Other events still in
the in-memory queue when the edge process is killed (SIGKILL) are lost; the
window is the queue's depth, normally milliseconds. :meth:`Publisher.stop`
flushes the queue to Redis or the outbox.

Full disk. When the outbox cannot store (disk full, I/O error) the publisher
releases the disk reserve (:mod:`dicombus.bus.disk_reserve`) and tries again;
what still does not fit is held in memory, in order, and every later message
joins it. :attr:`Publisher.congested` is on while anything is held or the
reserve is released, and the edge refuses new associations. Each replay attempt
tries the outbox again first, and the reserve is taken again once nothing is
held and the disk has room: the node recovers by itself once space returns.
Held messages are never dropped. At :data:`HELD_LIMIT` per queue slot
:attr:`Publisher.saturated` turns on: :meth:`submit_durable` refuses (the store
answers a failure, not a Success) and ``on_saturated`` is called (the edge
aborts its running associations, so that no more events come). A stop while the
outbox still cannot store writes the held messages to the last-resort file
(:mod:`dicombus.bus.held_file`), which the next start moves into the outbox.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dicombus.bus.disk_reserve import DiskReserve
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.held_file import write_held
from dicombus.bus.journal import Journal
from dicombus.bus.linger import AdaptiveLinger
from dicombus.bus.outbox import Outbox, OutboxError, OutboxMessage, StoredMessage
from dicombus.bus.publisher_child import ProcessSender
from dicombus.bus.sender import (
    BrokerError,
    Failure,
    LocalSender,
    Sender,
    SendItem,
    TaskMessageBuilder,
    build_messages,
)
from dicombus.bus.subscriptions import SubscriptionView
from dicombus.data_folder import redact
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.publisher")

# Replay-mode back-off between pings of a Redis that does not answer: short at
# first (most outages are a restart), capped so recovery is noticed within it.
RECONNECT_FIRST = 0.05
RECONNECT_CAP = 0.5
# One line of metrics at DEBUG this often (the thread also wakes for it when idle).
METRICS_INTERVAL = 30.0
# How long the publisher thread waits at most for a batch to fill once an event
# is in (dicombus.bus.linger: not at all after a quiet spell, in a stream as
# long as BATCH_TARGET events take to arrive, at most this). Each batch costs
# about 300 us of CPU across the child and Redis whatever it holds; a fixed
# 10 ms left batches of two to four events in a steady one-association C-STORE
# stream (bench/bus_run.py row 4). 25 ms keeps an event's latency from DICOM
# event to task start well under its 50 ms budget (row 2 at 1,000 events/s).
BATCH_LINGER = 0.025
BATCH_TARGET = 64
# Messages the outbox could not store are held in memory; at this many per event
# the queue holds the publisher is saturated: no C-STORE is answered Success and
# the running associations are aborted (the edge accepts none while anything is
# held), so the hold stops growing. Nothing held is dropped.
HELD_LIMIT = 2
# How often the publisher tries to take the disk reserve again once it was released.
RESERVE_RETRY = 1.0
# At stop, the share of the stop timeout spent trying to store held messages in the
# outbox before they go to the last-resort file.
HELD_STOP_SHARE = 0.5

COUNTERS = (
    "submitted",  # events given to submit()
    "published",  # messages sent to Redis straight from the queue
    "spooled",  # messages written to the outbox (or, at a stop, to the last-resort file)
    "spooled_on_submit",  # events an association thread wrote to the outbox (queue full)
    "replayed",  # messages sent to Redis from the outbox
    "unrouted",  # events nobody was subscribed to any more by publishing time
    "failed",  # events that could not be serialized or stored (each logged with its id)
    "journaled",  # events committed to the journal before their response was sent
    "resubmitted",  # events a previous run left in the journal, submitted again
)


@dataclass(frozen=True, slots=True)
class _Submitted:
    order: int  # submit order: the outbox replays by it
    created: float  # Unix time of submit(); lag is measured from it
    pending: PendingEvent
    journaled: bool = False  # in the journal until it is in Redis or the outbox


class PublisherSaturated(DicombusError, RuntimeError):
    """The publisher holds as many messages as it may in memory (the outbox cannot
    store): it takes no event a response would promise."""


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Publisher:
    """Bounded queue + publisher thread + outbox; see the module docstring."""

    def __init__(
        self,
        broker_url: str,
        view: SubscriptionView,
        outbox: Outbox,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        broker_timeout: float = 5.0,
        metrics_interval: float = METRICS_INTERVAL,
        batch_linger: float = BATCH_LINGER,
        publisher_process: bool = True,
        journal: Journal | None = None,
        reserve: DiskReserve | None = None,
        held_file: Path | None = None,
        on_saturated: Callable[[], None] | None = None,
    ) -> None:
        """``reserve``: released when the outbox meets a full disk. ``held_file``: where a
        stop that cannot store its held messages writes them (None: they are logged as
        lost). ``on_saturated``: called, on whichever thread got there, when the held
        messages reach their limit."""
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be positive")
        self._view = view
        self._outbox = outbox
        self._journal = journal
        # Messages the outbox could not store, oldest first (see the module docstring).
        self._held: list[OutboxMessage] = []
        self._held_lock = threading.Lock()
        self._held_limit = HELD_LIMIT * queue_size
        self._reserve = reserve
        self._reserve_retry_at = 0.0
        self._held_file = held_file
        self._on_saturated = on_saturated
        self._give_up_held_at = 0.0  # set by stop(): then held messages go to the file
        self._batch_size = batch_size
        self._linger = AdaptiveLinger(batch_linger, BATCH_TARGET)
        self._metrics_interval = metrics_interval
        # None entries are wake-ups (stop), not events.
        self._queue: queue.Queue[_Submitted | None] = queue.Queue(maxsize=queue_size)
        # Continue after what a previous run left in the outbox, so those replay first.
        self._order = itertools.count(outbox.max_order() + 1)
        self.broker_url = broker_url
        # For logs: the URL carries the embedded Redis's password.
        self._shown_url = redact(broker_url)
        origin = f"dicombus-edge@{socket.gethostname()}"
        # Builds the messages that go to the outbox, and whatever the sender
        # builds in this process.
        self._builder = TaskMessageBuilder(origin)
        sender = ProcessSender if publisher_process else LocalSender
        self._sender: Sender = sender(broker_url, timeout=broker_timeout, builder=self._builder)
        self._counters = _Counters()
        self._stopping = threading.Event()
        self._stopped = threading.Event()  # the thread has ended: nobody retries held messages
        self._thread: threading.Thread | None = None
        self._inflight_since: float | None = None
        self._replay_started: float | None = None
        self._broker_timeout = broker_timeout
        # The publisher thread's schedule: replay attempts and metrics lines.
        self._backoff = RECONNECT_FIRST
        self._next_attempt = 0.0  # monotonic time of the next replay attempt
        self._report_at = time.monotonic() + metrics_interval

    @property
    def sender_pid(self) -> int | None:
        """The process id of the publisher child process doing the work (None: publishing
        in-process, or no child ready now)."""
        return self._sender.pid

    @property
    def outbox_full(self) -> bool:
        """True while the outbox is at its limit."""
        return self._outbox.full

    @property
    def congested(self) -> bool:
        """True while the outbox is at its limit, cannot store at all (events held in
        memory), or the disk reserve is released: the edge refuses new associations."""
        reserve_gone = self._reserve is not None and not self._reserve.in_place
        return self._outbox.full or bool(self._held) or reserve_gone

    @property
    def saturated(self) -> bool:
        """True while the held messages are at their limit: no Success is promised."""
        return len(self._held) >= self._held_limit

    # -- association threads --------------------------------------------------------------

    def submit(self, pending: PendingEvent, *, journaled: bool = False) -> None:
        """Hand ``pending`` over for publishing; never blocks on the network or the queue.
        ``journaled``: it is in the journal, to be forgotten there once stored or sent."""
        item = _Submitted(next(self._order), time.time(), pending, journaled)
        self._counters.add("submitted")
        if not self._stopping.is_set():
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        # The queue is full, or the publisher is stopping: store the event here
        # and now (its number keeps it in order on replay). Counted first: the
        # replay loop reads the count to notice that this happened.
        self._counters.add("spooled_on_submit")
        self._spool([item])

    def submit_durable(self, pending: PendingEvent) -> None:
        """Commit ``pending`` to the journal (waiting for the fsync), then :meth:`submit` it.

        Raises :class:`~dicombus.bus.journal.JournalError` when the journal cannot
        take it, :class:`PublisherSaturated` when the publisher holds all it may;
        the event is then not submitted at all. Without a journal this is
        :meth:`submit`.
        """
        if self.saturated:
            raise PublisherSaturated(
                f"{len(self._held)} events are held in memory: the outbox cannot store"
            )
        if self._journal is None:
            self.submit(pending)
            return
        self._journal.record(pending)
        self._counters.add("journaled")
        self.submit(pending, journaled=True)

    def resubmit_journaled(self) -> int:
        """Submit again, same ids, the events a previous run journaled and did not see
        published; call it after :meth:`start`, before accepting associations."""
        if self._journal is None:
            return 0
        leftovers = self._journal.leftovers()
        for pending in leftovers:
            self.submit(pending, journaled=True)
        self._counters.add("resubmitted", len(leftovers))
        return len(leftovers)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the publisher is already started")
        self._stopping.clear()
        self._stopped.clear()
        self._sender.start()
        self._thread = threading.Thread(target=self._run, name="dicombus-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Flush the queue (to Redis, or the outbox if Redis does not take it) and stop.

        Events submitted from now on go to the outbox. If the flush is not done
        within ``timeout`` (a hung child process), the child is killed and the
        publisher thread finishes the flush itself, within about twice the broker
        timeout more.
        """
        self._give_up_held_at = time.monotonic() + HELD_STOP_SHARE * timeout
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # then the thread is busy and sees the flag
            self._queue.put_nowait(None)
        thread, self._thread = self._thread, None
        if thread is None:
            self._sender.close()  # never started; a started thread closes it as it ends
            return
        thread.join(timeout)
        if thread.is_alive():
            self._sender.kill()
            thread.join(2 * self._broker_timeout + 1)
            if thread.is_alive():
                LOGGER.error(
                    "the publisher thread did not stop within %.1f s; events still queued "
                    "are lost if the process exits now",
                    timeout + 2 * self._broker_timeout + 1,
                )

    # -- metrics --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Counters (see :data:`COUNTERS`) and gauges: queued (events in memory now),
        lag_seconds (age of the oldest event not yet in Redis), outbox_rows,
        outbox_bytes, outbox_full (0 or 1), replaying (0 or 1)."""
        values: dict[str, float] = dict(self._counters.snapshot())
        values["queued"] = self._queue.qsize()
        values["lag_seconds"] = self._lag()
        values["outbox_rows"] = self._outbox.rows
        values["outbox_bytes"] = self._outbox.bytes
        values["outbox_full"] = float(self._outbox.full)
        values["replaying"] = float(self._outbox.rows > 0)
        values["sender_restarts"] = self._sender.restarts
        values["held"] = len(self._held)
        return values

    def _lag(self) -> float:
        oldest: list[float] = []
        if self._inflight_since is not None:
            oldest.append(self._inflight_since)
        with self._queue.mutex:
            head = next((item for item in self._queue.queue if item is not None), None)
        if head is not None:
            oldest.append(head.created)
        if self._outbox.rows:
            # Metrics must not fail with the outbox (its failures are logged where
            # they lose events).
            with contextlib.suppress(OutboxError):
                created = self._outbox.oldest_created()
                if created is not None:
                    oldest.append(created)
        return max(0.0, time.time() - min(oldest)) if oldest else 0.0

    # -- the publisher thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        finally:
            self._stopped.set()
            self._sender.close()

    def _step(self) -> bool:
        """One round of the publisher thread; False once stopped and flushed. An
        unexpected error is logged and the thread goes on: it must not die silently."""
        try:
            return self._round()
        except Exception:
            LOGGER.exception("the publisher thread failed; it goes on")
            time.sleep(RECONNECT_FIRST)  # not a hot loop if it repeats
            return True

    def _round(self) -> bool:
        now = time.monotonic()
        if now >= self._report_at:
            self._report_at = now + self._metrics_interval
            if LOGGER.isEnabledFor(logging.DEBUG):
                LOGGER.debug("publisher metrics: %s", self.metrics())
        if self._stopping.is_set():
            # Flush: to Redis while the outbox is empty, else behind what waits there.
            batch = self._take(wait=None)
            if not batch:
                return not self._settle_held()
            self._send(batch)
            return True
        retake_in = self._retake_reserve(now)
        if not self._outbox.rows and not self._held:
            wait = self._report_at - now if retake_in is None else retake_in
            if self._journal is not None:
                # Journal rows of published events, left by a stream that stopped.
                due = self._journal.commit_due_deletes()
                wait = wait if due is None else min(wait, due)
            batch = self._take(wait=wait, linger=self._linger)
            if batch:
                self._send(batch)
        else:
            if now >= self._next_attempt:
                if self._flush_held() and self._replay_outbox():
                    self._backoff, self._next_attempt = RECONNECT_FIRST, 0.0
                    return True
                self._next_attempt = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, RECONNECT_CAP)
            # Until the next attempt, keep the queue moving into the outbox.
            wait = min(self._next_attempt, self._report_at) - time.monotonic()
            self._spool(self._take(wait=max(wait, 0.0)))
        return True

    def _take(self, wait: float | None, linger: AdaptiveLinger | None = None) -> list[_Submitted]:
        """Up to batch_size events; waits ``wait`` seconds for the first (None: no wait),
        then as long as ``linger`` says for more to arrive before taking them."""
        batch: list[_Submitted] = []
        started = time.monotonic()
        try:
            first = self._queue.get_nowait() if wait is None else self._queue.get(timeout=wait)
        except queue.Empty:
            return batch
        if first is not None:
            batch.append(first)
        pause = 0.0 if linger is None else linger.wait(time.monotonic() - started)
        if pause > 0 and first is not None:
            self._inflight_since = first.created  # in hand: lag counts it (_send clears it)
            # A plain sleep, not a get() with a timeout: that would wake this
            # thread (and take the GIL from the association threads) once per
            # event submitted meanwhile; this wakes it once per batch.
            time.sleep(pause)
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        if linger is not None and batch:
            linger.taken(len(batch))
        return batch

    def _drain(self) -> list[_Submitted]:
        """What is in the queue now (at most one queue's worth: bounded under any inflow)."""
        drained: list[_Submitted] = []
        while len(drained) < self._queue.maxsize and (batch := self._take(wait=None)):
            drained.extend(batch)
        return drained

    def _send(self, batch: list[_Submitted]) -> None:
        self._inflight_since = batch[0].created
        try:
            self._publish_or_spool(batch)
        finally:
            self._inflight_since = None
        self._forget(batch)

    def _publish_or_spool(self, batch: list[_Submitted]) -> None:
        if self._outbox.rows or self._held:
            # Something was spooled since these were queued: they go behind it
            # (their submit numbers put them before it on replay).
            self._spool_routed(self._route(batch))
            return
        routed = self._route(batch)
        if not routed:
            return  # nobody subscribed to any of them any more
        try:
            result = self._sender.send(routed)
        except Exception:
            LOGGER.exception("publishing a batch failed; it goes to the outbox")
            self._spool_routed(routed)
            return
        self._record(result.failures)
        self._counters.add("published", result.published)
        if result.unsent:
            LOGGER.warning(
                "Redis at %s did not take %d messages (%s); they are in the outbox "
                "and will be replayed when it answers",
                self._shown_url,
                len(result.unsent),
                result.error,
            )
            self._store(list(result.unsent))

    def _replay_outbox(self) -> bool:
        """One replay attempt: True once the outbox is empty (publish directly again)."""
        if self._replay_started is None:
            self._replay_started = time.monotonic()
        self._checkpoint()
        if not self._sender.ping():
            return False
        replayed = 0
        while not self._stopping.is_set():
            spilled = self._counters.get("spooled_on_submit")
            # Nothing queued may be older than the chunk about to go out: move the
            # queue behind what waits (the numbers put each event in its place).
            self._spool(self._drain())
            chunk = self._outbox.oldest(self._batch_size)
            if not chunk:
                LOGGER.info(
                    "outbox replayed (%d messages in the last round; replay mode lasted "
                    "%.1f s); publishing directly again",
                    replayed,
                    time.monotonic() - self._replay_started,
                )
                self._replay_started = None
                return True
            if self._counters.get("spooled_on_submit") != spilled:
                continue  # that thread's earlier events may have been queued: read again
            if not self._replay(chunk):
                return False
            replayed += len(chunk)
            self._checkpoint()
        return False

    def _checkpoint(self) -> None:
        try:
            self._outbox.maybe_checkpoint()
        except OutboxError as exc:
            LOGGER.warning("%s", exc)  # the WAL grows until the next one succeeds

    def _replay(self, chunk: list[StoredMessage]) -> bool:
        try:
            self._sender.publish([stored.message for stored in chunk])
        except BrokerError as exc:
            LOGGER.warning("replay to %s failed (%s)", self._shown_url, exc)
            return False
        try:
            self._outbox.delete(chunk)
        except OutboxError as exc:
            # They are in Redis and still in the outbox: replayed again later
            # (same task ids), which idempotent tasks absorb.
            LOGGER.error("%s", exc)
            return False
        self._counters.add("replayed", len(chunk))
        return True

    # -- building and spooling (any thread) -----------------------------------------------

    def _route(self, items: Iterable[_Submitted]) -> list[SendItem]:
        """Each event with the tasks subscribed to it now; those with none are dropped
        here (counted), never serialized."""
        routed: list[SendItem] = []
        for item in items:
            deliveries = self._view.deliveries(item.pending.event_type)
            if not deliveries:
                self._counters.add("unrouted")
                continue
            routed.append(SendItem(item.order, item.created, item.pending, deliveries))
        return routed

    def _record(self, failures: Sequence[Failure]) -> None:
        for failure in failures:
            self._counters.add("failed")
            LOGGER.error(
                "cannot serialize event %s (%s); it is not published\n%s",
                failure.event_id,
                failure.event_type,
                failure.error,
            )

    def _spool(self, items: list[_Submitted]) -> None:
        if items:
            self._spool_routed(self._route(items))
            self._forget(items)

    def _forget(self, items: list[_Submitted]) -> None:
        """Journaled events of ``items`` are in Redis or the outbox now (or were dropped
        as unroutable or unserializable, logged): their journal rows can go. Those
        held in memory stay journaled."""
        if self._journal is None:
            return
        ids = [item.pending.id for item in items if item.journaled]
        if ids and self._held:
            with self._held_lock:
                held = {message.event_id for message in self._held}
            ids = [event_id for event_id in ids if event_id not in held]
        self._journal.forget(ids)

    def _spool_routed(self, items: list[SendItem]) -> None:
        messages, failures = build_messages(self._builder, items)
        self._record(failures)
        self._store(messages)

    def _store(self, messages: list[OutboxMessage]) -> None:
        if not messages:
            return
        saturated = False
        with self._held_lock:
            if self._held:  # behind what is held already, to keep the order
                saturated = self._hold(messages)
            else:
                try:
                    self._append(messages)
                except OutboxError as exc:
                    LOGGER.error(
                        "%s; events are held in memory and new associations refused until "
                        "the outbox can store again",
                        exc,
                    )
                    saturated = self._hold(messages)
                else:
                    self._counters.add("spooled", len(messages))
        if saturated:
            self._saturated()

    def _append(self, messages: list[OutboxMessage]) -> None:
        """Append to the outbox; on failure release the disk reserve, if that frees
        anything, and try once more. Raises OutboxError."""
        try:
            self._outbox.append(messages)
        except OutboxError:
            if self._reserve is None or not self._reserve.release():
                raise
            self._outbox.append(messages)

    def _hold(self, messages: list[OutboxMessage]) -> bool:
        """Hold ``messages`` in memory (called with the held lock); True if that made the
        publisher saturated just now. After the thread has stopped nobody would retry
        them: they go to the last-resort file."""
        if self._stopped.is_set():
            self._write_held(messages)
            return False
        was = self.saturated
        self._held.extend(messages)
        return self.saturated and not was

    def _saturated(self) -> None:
        LOGGER.error(
            "%d events are held in memory (the outbox cannot store): C-STOREs are answered "
            "0xA700 and the running associations aborted until it stores again",
            len(self._held),
        )
        if self._on_saturated is not None:
            self._on_saturated()

    def _flush_held(self) -> bool:
        """Move the held messages into the outbox; True once none are held."""
        with self._held_lock:
            held = self._held
            if not held:
                return True
            try:
                self._append(held)
            except OutboxError:
                return False  # logged when they were held; tried again at the next attempt
            self._held = []
        self._counters.add("spooled", len(held))
        LOGGER.warning("the outbox stores again: %d held messages written to it", len(held))
        if self._journal is not None:
            self._journal.forget({message.event_id for message in held})
        return True

    def _retake_reserve(self, now: float) -> float | None:
        """Take the released disk reserve again once nothing is held and the disk has room;
        the seconds until the next try (None: it is in place)."""
        reserve = self._reserve
        if reserve is None or reserve.in_place:
            return None
        if self._held or now < self._reserve_retry_at:
            return max(self._reserve_retry_at - now, 0.0) or RESERVE_RETRY
        if reserve.take():
            LOGGER.warning(
                "disk space returned: the disk reserve %s is in place again; "
                "accepting associations",
                reserve.path,
            )
            return None
        self._reserve_retry_at = now + RESERVE_RETRY
        return RESERVE_RETRY

    def _settle_held(self) -> bool:
        """At stop: store the held messages in the outbox, trying until the stop's share
        of its timeout is spent, else in the last-resort file. True once settled."""
        if self._flush_held():
            return True
        if time.monotonic() < self._give_up_held_at:
            time.sleep(RECONNECT_CAP)
            return False
        with self._held_lock:
            held, self._held = self._held, []
            self._write_held(held)
        return True

    def _write_held(self, messages: list[OutboxMessage]) -> None:
        """The last resort: the file the next start moves into the outbox."""
        if self._held_file is not None:
            try:
                write_held(self._held_file, messages)
            except OSError as exc:
                self._lose(
                    messages, f"neither the outbox nor {self._held_file} can store them ({exc})"
                )
                return
            self._counters.add("spooled", len(messages))
            LOGGER.error(
                "the outbox cannot store: %d held messages written to %s; the next start "
                "moves them into the outbox",
                len(messages),
                self._held_file,
            )
            if self._journal is not None:
                self._journal.forget({message.event_id for message in messages})
            return
        self._lose(messages, "the outbox cannot store them and the publisher is stopping")

    def _lose(self, messages: list[OutboxMessage], why: str) -> None:
        # Only when no disk takes a byte (or no last-resort file was given); C-STORE
        # Success events among them stay in the journal and are published after restart.
        lost = sorted({message.event_id for message in messages})
        self._counters.add("failed", len(lost))
        LOGGER.critical("EVENTS LOST: %s; events %s are not published", why, ", ".join(lost))
