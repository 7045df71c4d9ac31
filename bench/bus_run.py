"""The event bus benchmark (issue 4): edge -> Redis -> Celery, measured on this machine.

    python bench/bus_run.py [--quick] [--json results.json] [--only store,publish,...]

Everything is real: the embedded redis-server (appendonly yes), edge nodes
and their publisher in this process, ``dicombus worker`` processes (Celery
prefork, the shipped defaults: acks late, prefetch 1) running the no-op tasks
of bench/bus_tasks.py, and DICOM SCUs in processes of their own. Rows:

1. **Publish**: events/s from one edge into Redis, as Celery task messages.
   Real events are first captured from real associations (lifecycle, C-ECHO
   and C-STORE: 17 per association), then handed to a fresh publisher at once,
   once its child process does the work; the figure is events / time until the
   last one is in Redis, with the CPU per event of the publisher child, Redis
   and the edge process (scheduler accounts, /proc/<pid>/task/*/schedstat),
   and the CPU of each stage run alone in this process.
2. **Latency**: one association sends C-ECHOs paced at 1,000/s; workers
   (one with a prefork pool of 2; two solo-pool workers, ``dicombus up``'s
   default) run ``bench.latency``, which records how long after
   the edge captured the event the task started (p50 / p99). Short warm-up
   runs first, until the edge's publisher child process does the work.
3. **Consume**: a queue pre-filled with C-ECHO events, drained by a worker
   with 1, 2 and 4 pool processes (first task start to last task end).
4. **C-STORE with publishing on vs off**: instances/s over one association
   (Part 10 files sent as they are on disk) into an edge whose lifecycle and
   C-STORE events are published, into the same edge with the bus off, and
   into one that publishes from its own process (``publisher_process =
   false``); the median of runs in rotating order, the edge process's CPU
   per instance, and the publisher child's and Redis's (publishing on).
5. **Interference**: small C-STOREs into an edge with the bus off, alone and
   beside a process that spins 15% of the time (at normal priority and at
   SCHED_IDLE): on a 2-CPU machine, what any CPU spent elsewhere costs row 4.
6. **Built-in tasks** (``--only builtin``): the CPU time of one solo-pool
   ``dicombus worker`` running the built-in audit and counters, per event,
   while it drains C-ECHO events sent to it as fast as Redis takes them: the
   two single-message tasks (``DICOMBUS_BUILTIN_TASKS=separate``) against the
   combined batch task (the default). CPU time, not wall time: the machine
   may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from dicombus import AE, evt
from dicombus.bus.capture import EventCapture
from dicombus.bus.edge import EdgeNode, build_ae
from dicombus.bus.edge_config import EdgeConfig
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.outbox import Outbox
from dicombus.bus.publisher import Publisher
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import Broker, TaskMessageBuilder
from dicombus.bus.subscriptions import Subscription, SubscriptionView
from dicombus.cli.storescp import handle_store
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

BENCH = Path(__file__).resolve().parent
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
LIFECYCLE = (
    "EVT_CONN_OPEN",
    "EVT_REQUESTED",
    "EVT_ACCEPTED",
    "EVT_ESTABLISHED",
    "EVT_RELEASED",
    "EVT_CONN_CLOSE",
    "EVT_ABORTED",
    "EVT_REJECTED",
)
STORE_MIX = frozenset({*LIFECYCLE, "EVT_C_STORE"})
SINK = "bench.sink"  # a queue nobody consumes; emptied after each row
WORKER_START_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0

# The issue's targets.
PUBLISH_TARGET = 5_000.0  # events/s
WORKER_CPU_TARGET = 150.0  # us of worker CPU per event per task (issue 10)
REDIS_CPU_TARGET = 50.0  # us of Redis CPU per event (issue 10)
LATENCY_TARGET = 0.050  # p99 seconds at 1,000 events/s
STORE_RATIO_TARGET = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    associations: int  # publish row: associations per mix
    latency_seconds: float
    consume_events: int
    store_instances: int
    store_repeats: int


FULL = Budget(
    associations=300,
    latency_seconds=8.0,
    consume_events=4000,
    store_instances=1500,
    store_repeats=5,
)
QUICK = Budget(
    associations=200,
    latency_seconds=3.0,
    consume_events=1500,
    store_instances=500,
    store_repeats=3,
)
# Each association of the publish row: 6 lifecycle events and 10 C-ECHOs or C-STOREs.
EVENTS_PER_ASSOCIATION = 10


# -- SCUs: run in processes of their own ---------------------------------------------------


def _dataset(rows: int, columns: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Bench^Bus"
    ds.PatientID = "BUS-1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = os.urandom(rows * columns * 2)
    ds["PixelData"].VR = "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _associate(port: int, *contexts: str) -> Any:
    ae = AE("BENCHSCU")
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    if not assoc.is_established:
        raise RuntimeError("the edge did not accept the association")
    return assoc


def scu_associations(port: int, associations: int, echoes: int, stores: int) -> float:
    """``associations`` x (``echoes`` C-ECHOs, ``stores`` small C-STOREs); returns seconds."""
    datasets = [_dataset(16, 16) for _ in range(associations * stores)]
    started = time.perf_counter()
    for index in range(associations):
        assoc = _associate(port, CT_IMAGE_STORAGE, VERIFICATION)
        for _ in range(echoes):
            assoc.send_c_echo()
        for ds in datasets[index * stores : (index + 1) * stores]:
            assoc.send_c_store(ds)
        assoc.release()
    return time.perf_counter() - started


def scu_paced_echo(port: int, rate: float, seconds: float) -> tuple[int, float]:
    """C-ECHOs on one association at ``rate``/s for ``seconds``; (echoes, seconds taken)."""
    assoc = _associate(port, VERIFICATION)
    interval = 1.0 / rate
    started = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - started < seconds:
        due = started + sent * interval
        if due > now:
            time.sleep(due - now)
        assoc.send_c_echo()
        sent += 1
    elapsed = time.perf_counter() - started
    assoc.release()
    return sent, elapsed


def scu_store_one_association(port: int, count: int, rows: int) -> float:
    """``count`` C-STOREs of rows x rows 16-bit instances over one association; seconds.

    The instances are Part 10 files written beforehand, sent as they are on disk
    (as a modality or a PACS sends what it has stored): the SCU spends as little
    CPU as it can, so the edge's own cost is what the row measures.
    """
    with tempfile.TemporaryDirectory(prefix="dicombus-bench-scu-") as folder:
        paths = []
        for index in range(count):
            path = Path(folder) / f"{index}.dcm"
            _dataset(rows, rows).save_as(path, enforce_file_format=True)
            paths.append(path)
        assoc = _associate(port, CT_IMAGE_STORAGE)
        started = time.perf_counter()
        for path in paths:
            assoc.send_c_store(path)
        elapsed = time.perf_counter() - started
        assoc.release()
    return elapsed


# -- the pieces in this process ------------------------------------------------------------


def _config(url: str, folder: Path, **settings: Any) -> EdgeConfig:
    return EdgeConfig(
        edge_id="bench",
        ae_title="EDGE",
        port=0,
        data_dir=folder,
        broker_url=url,
        **settings,
    )


@contextmanager
def _edge(url: str, folder: Path, **settings: Any) -> Iterator[EdgeNode]:
    node = EdgeNode(_config(url, folder, **settings))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@contextmanager
def _workers(
    url: str,
    folder: Path,
    queue: str,
    processes: int,
    *,
    count: int = 1,
    pool: str = "prefork",
    prefetch: int | None = None,
    builtin: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[list[int]]:
    """``count`` ``dicombus worker`` processes running bench/bus_tasks.py (and the
    built-in tasks if ``builtin``) on ``queue`` (comma-separated queues), each with
    ``processes`` pool processes; killed (by process group) afterwards. Yields their pids."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "dicombus.cli.main",
        "worker",
        *([] if builtin else ["--no-builtin"]),
        "--include=bus_tasks",
        f"--queues={queue}",
        f"--concurrency={processes}",
        f"--pool={pool}",
        "--loglevel=WARNING",
    ]
    environment = {
        **os.environ,
        "DICOMBUS_BROKER_URL": url,
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    if prefetch is not None:
        environment["DICOMBUS_PREFETCH"] = str(prefetch)
    client = redis.Redis.from_url(url)
    client.delete("bench:ready")
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for index in range(count):
            logs.append(folder / f"worker-{queue}-{pool}-{index}-{time.monotonic_ns()}.log")
            with logs[-1].open("wb") as sink:
                started.append(
                    subprocess.Popen(
                        [*command, f"--hostname=bench{index}-{os.getpid()}@%h"],
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        env=environment,
                        start_new_session=True,
                    )
                )

        def alive() -> None:
            for process, log in zip(started, logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited: {log.read_text()[-2000:]}")

        _wait(
            lambda: int(client.get("bench:ready") or 0) >= count,
            "the workers",
            WORKER_START_TIMEOUT,
            alive,
        )
        yield [process.pid for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        client.close()


def _wait(
    condition: Callable[[], Any],
    what: str,
    timeout: float = RUN_TIMEOUT,
    alive: Callable[[], Any] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


# -- rows ----------------------------------------------------------------------------------


def _capture(
    url: str, folder: Path, scus: ProcessPoolExecutor, mix: frozenset[str], job: tuple[Any, ...]
) -> list[PendingEvent]:
    """The events of ``mix`` that real associations (``job``, run by an SCU) produce."""
    captured: list[PendingEvent] = []
    config = _config(url, folder)
    config.storage.mkdir(parents=True, exist_ok=True)
    server = build_ae(config).start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, handle_store, [config.storage, config.layout])],
    )
    capture = EventCapture(
        edge_id="bench",
        sink=captured.append,
        wants=mix.__contains__,
        bulk_data_uri_base=config.storage.resolve().as_uri(),
    )
    capture.attach(server)
    try:
        scus.submit(job[0], server.server_address[1], *job[1:]).result(RUN_TIMEOUT)
    finally:
        server.shutdown()
        capture.detach()
    return captured


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that process ``pid`` has run so far, all its threads:
    the scheduler's nanosecond account (/proc/<pid>/task/<tid>/schedstat), not the
    10 ms ticks of /proc/<pid>/stat."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


def _stages(
    events: list[PendingEvent], sub: Subscription, url: str, redis_pid: int
) -> dict[str, float]:
    """CPU seconds per event of each publishing stage, run one after the other in this
    process (and Redis's, for the messages it takes)."""
    builder = TaskMessageBuilder(origin="bench")
    broker = Broker(url, timeout=10)
    started = time.process_time()
    envelopes = [pending.to_envelope() for pending in events]
    built = time.process_time()
    messages = [builder.build(e, sub, order=i, created=0.0) for i, e in enumerate(envelopes)]
    wrapped = time.process_time()
    redis_before = cpu_seconds(redis_pid)
    for start in range(0, len(messages), 500):
        broker.publish(messages[start : start + 500])
    sent = time.process_time()
    redis_cpu = cpu_seconds(redis_pid) - redis_before
    broker.close()
    count = len(events)
    return {
        "envelope_us": 1e6 * (built - started) / count,
        "celery_message_us": 1e6 * (wrapped - built) / count,
        "redis_us": 1e6 * (sent - wrapped) / count,
        "redis_server_us": 1e6 * redis_cpu / count,
    }


def _warm_up_child(publisher: Publisher, events: list[PendingEvent]) -> int:
    """Submit events one by one until the publisher child does the work (it starts in
    about a second, the publisher thread working meanwhile); how many were submitted."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    submitted = 0
    while publisher.sender_pid is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the publisher child did not start")
        publisher.submit(events[submitted % len(events)])
        submitted += 1
        time.sleep(0.05)
    _wait(lambda: publisher.metrics()["published"] >= submitted, "the warm-up")
    return submitted


def bench_publish(
    url: str, tmp: Path, scus: ProcessPoolExecutor, budget: Budget, redis_pid: int
) -> dict[str, Any]:
    """Events/s from one edge's publisher into Redis, for two mixes of real events (row 1),
    once its child process does the work; the CPU per event of this process (the
    publisher thread and submit), the publisher child and Redis."""
    client = redis.Redis.from_url(url)
    jobs = {
        "lifecycle + C-ECHO": (
            frozenset({*LIFECYCLE, "EVT_C_ECHO"}),
            (scu_associations, budget.associations, EVENTS_PER_ASSOCIATION, 0),
        ),
        "lifecycle + C-STORE": (
            frozenset({*LIFECYCLE, "EVT_C_STORE"}),
            (scu_associations, budget.associations, 0, EVENTS_PER_ASSOCIATION),
        ),
    }
    results: dict[str, Any] = {}
    for index, (name, (mix, job)) in enumerate(jobs.items()):
        events = _capture(url, tmp / f"capture-{index}", scus, mix, job)
        sub = Subscription(SINK, SINK, mix)
        view = SubscriptionView(url, static=[sub])
        view.start()
        publisher = Publisher(
            url, view, Outbox(tmp / f"outbox-{index}.sqlite3"), queue_size=len(events) + 1
        )
        publisher.start()
        warm = _warm_up_child(publisher, events)
        child = publisher.sender_pid
        assert child is not None
        cpu_before = (time.process_time(), cpu_seconds(child), cpu_seconds(redis_pid))
        started = time.perf_counter()
        for pending in events:
            publisher.submit(pending)
        total = warm + len(events)
        _wait(lambda: publisher.metrics()["published"] >= total, "the publisher")  # noqa: B023
        elapsed = time.perf_counter() - started
        cpu_after = (time.process_time(), cpu_seconds(child), cpu_seconds(redis_pid))
        edge_cpu, child_cpu, redis_cpu = (
            1e6 * (after - before) / len(events)
            for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        metrics = publisher.metrics()
        publisher.stop()
        view.stop()
        in_redis = client.llen(SINK) - warm
        client.delete(SINK)
        results[name] = {
            "events": len(events),
            "in_redis": in_redis,
            "spooled": metrics["spooled"],
            "events_per_s": len(events) / elapsed,
            "cpu_us": {"edge": edge_cpu, "child": child_cpu, "redis": redis_cpu},
            **_stages(events, sub, url, redis_pid),
        }
        client.delete(SINK)
    client.close()
    return results


def bench_latency(
    url: str, tmp: Path, scus: ProcessPoolExecutor, budget: Budget, **shape: Any
) -> dict[str, Any]:
    """Event -> task start at a paced 1,000 events/s, workers of ``shape`` (row 2)."""
    client = redis.Redis.from_url(url)
    client.delete("bench:latency")
    with (
        _workers(url, tmp / "workers", "bench.latency", **shape),
        _edge(url, tmp / f"latency-{time.monotonic_ns()}") as node,
    ):
        _wait(lambda: node.view is not None and node.view.wants("EVT_C_ECHO"), "the subscription")
        _warm_up(node, scus, client)
        sent, seconds = scus.submit(
            scu_paced_echo, node.address[1], 1000.0, budget.latency_seconds
        ).result(RUN_TIMEOUT)
        _wait(lambda: client.llen("bench:latency") >= sent, "every task to start", 60)
    # Every event of the paced run counts, the first ones included.
    values = sorted(float(v) for v in client.lrange("bench:latency", 0, -1))
    client.close()
    return {
        "events": sent,
        "rate": sent / seconds,
        "p50_ms": 1000 * _percentile(values, 50),
        "p99_ms": 1000 * _percentile(values, 99),
        "max_ms": 1000 * max(values),
    }


def _warm_up(node: EdgeNode, scus: ProcessPoolExecutor, client: redis.Redis) -> None:
    """Short runs of C-ECHOs until the edge's publisher child does the work (as on an
    edge that has been up for a while: its start-up costs about a second of CPU),
    their tasks started; then the latencies recorded so far are dropped."""
    assert node.publisher is not None
    sent = 0
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while node.publisher.sender_pid is None and time.monotonic() < deadline:
        sent += scus.submit(scu_paced_echo, node.address[1], 1000.0, 0.1).result(RUN_TIMEOUT)[0]
    _wait(lambda: client.llen("bench:latency") >= sent, "the warm-up tasks to start", 60)
    client.delete("bench:latency")


def _percentile(values: list[float], percent: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1]


def bench_consume(url: str, tmp: Path, budget: Budget, **shape: Any) -> float:
    """Events/s drained from a full queue by workers of ``shape`` (see _workers; row 3)."""
    client = redis.Redis.from_url(url)
    client.delete("bench:consumed", "bench:first", "bench:last", "bench.consume")
    builder = TaskMessageBuilder(origin="bench")
    broker = Broker(url, timeout=10)
    sub = Subscription("bench.consume", "bench.consume", frozenset({"EVT_C_ECHO"}))
    envelope = _echo_envelope()
    messages = []
    for index in range(budget.consume_events):
        envelope = {**envelope, "id": f"01BENCH{index:019d}", "sequence": index + 1}
        messages.append(builder.build(envelope, sub, order=index, created=time.time()))
    for start in range(0, len(messages), 500):
        broker.publish(messages[start : start + 500])
    broker.close()
    with _workers(url, tmp / "workers", "bench.consume", **shape):
        _wait(lambda: int(client.get("bench:consumed") or 0) >= budget.consume_events, "consumers")
        first, last = float(client.get("bench:first")), float(client.get("bench:last"))
    client.close()
    return budget.consume_events / (last - first)


# Row 6: the built-in tasks as each mode of DICOMBUS_BUILTIN_TASKS declares them.
BUILTIN_MODES: dict[str, tuple[Subscription, ...]] = {
    "separate": (
        Subscription("dicombus.audit", "dicombus.audit", frozenset({"EVT_C_ECHO"})),
        Subscription("dicombus.count", "dicombus.count", frozenset({"EVT_C_ECHO"})),
    ),
    "combined": (
        Subscription("dicombus.audit_count", "dicombus.audit_count", frozenset({"EVT_C_ECHO"})),
    ),
}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        # /proc/PID/stat: fields 14 and 15 (utime, stime), after the ")" of the name.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def bench_builtin(
    url: str, tmp: Path, budget: Budget, mode: str, redis_pid: int
) -> dict[str, float]:
    """Worker CPU per event for the built-in audit and counters in ``mode`` (row 6), and
    Redis's (the publishing, the worker's fetches, counters and acknowledgements)."""
    subs = BUILTIN_MODES[mode]
    client = redis.Redis.from_url(url)
    client.delete("dicombus:counts:type", "dicombus:counts:ae", "dicombus:counts:ae:BENCHSCU")
    folder = tmp / f"builtin-{mode}-{time.monotonic_ns()}"
    audit_db = folder / "audit.sqlite3"
    builder = TaskMessageBuilder(origin="bench")
    envelope = _echo_envelope()
    messages = []
    for index in range(budget.consume_events):
        event = {**envelope, "id": f"01B{mode[:3].upper()}{index:020d}", "sequence": index + 1}
        messages.extend(builder.build(event, sub, order=index, created=time.time()) for sub in subs)
    settings = {"DICOMBUS_BUILTIN_TASKS": mode, "DICOMBUS_AUDIT_DB": str(audit_db)}
    queues = ",".join(sub.queue for sub in subs)

    def drained() -> bool:
        counted = int(client.hget("dicombus:counts:type", "EVT_C_ECHO") or 0)
        if counted < budget.consume_events or not audit_db.is_file():
            return False
        with sqlite3.connect(audit_db) as connection:
            (rows,) = connection.execute("SELECT count(*) FROM events").fetchone()
        return int(rows) >= budget.consume_events

    with _workers(url, folder, queues, 1, pool="solo", builtin=True, env=settings) as pids:
        cpu_before, wall_before = _cpu_seconds(pids), time.monotonic()
        redis_before = _cpu_seconds([redis_pid])
        broker = Broker(url, timeout=10)
        for start in range(0, len(messages), 500):
            broker.publish(messages[start : start + 500])
        broker.close()
        _wait(drained, f"the {mode} built-in tasks")
        cpu, wall = _cpu_seconds(pids) - cpu_before, time.monotonic() - wall_before
        redis_cpu = _cpu_seconds([redis_pid]) - redis_before
    client.close()
    per_event = 1e6 * cpu / budget.consume_events
    return {
        "events": budget.consume_events,
        "tasks": len(subs),
        "cpu_us_per_event": per_event,
        "cpu_us_per_event_per_task": per_event / len(subs),
        "redis_cpu_us_per_event": 1e6 * redis_cpu / budget.consume_events,
        "events_per_s": budget.consume_events / wall,
    }


def _echo_envelope() -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "",
        "source": "dicombus://bench/EDGE",
        "type": "EVT_C_ECHO",
        "time": "2026-01-01T00:00:00.000000Z",
        "subject": "01BENCHASSOCIATION00000000",
        "datacontenttype": "application/json",
        "sequence": 0,
        "schemaversion": "1",
        "data": {
            "association": {
                "calling_ae_title": "BENCHSCU",
                "called_ae_title": "EDGE",
                "peer_address": "127.0.0.1",
                "peer_port": 50000,
                "local_port": 11112,
                "tls_peer_subject": None,
                "role": "acceptor",
            },
            "message_id": 1,
            "status": 0,
            "status_category": "Success",
        },
    }


# Row 4: C-STOREs of a warm-up association before each timed one.
WARM_UP = 50
WARM_UP_MORE = 5  # per association, until the publisher child does the work
# Row 4's edges: the bus off; on, with the publisher child process (the
# default); on, with the publisher's work in its thread in the edge process.
STORE_MODES: dict[str, dict[str, Any]] = {
    "off": {"bus_enabled": False},
    "on": {"publisher_process": True},
    "on, in-process": {"publisher_process": False},
}


def _published(node: EdgeNode) -> float:
    return node.metrics().get("published", 0.0)


def _child_pid(
    node: EdgeNode, port: int, scus: ProcessPoolExecutor, rows: int
) -> tuple[int | None, int]:
    """The publisher child's pid once it does the work (None when the edge publishes
    in-process or not at all), and the instances of the warm-up associations it took."""
    publisher = node.publisher
    if publisher is None or not node.config.publisher_process:
        return None, 0
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    associations = 0
    while publisher.sender_pid is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the publisher child did not start")
        scus.submit(scu_store_one_association, port, WARM_UP_MORE, rows).result(RUN_TIMEOUT)
        associations += 1
    return publisher.sender_pid, associations


def bench_store(
    url: str,
    tmp: Path,
    scus: ProcessPoolExecutor,
    budget: Budget,
    rows: int,
    count: int,
    redis_pid: int,
) -> dict[str, Any]:
    """C-STORE instances/s with publishing off and on, median of runs in rotating order
    (row 4).

    Also the edge process's CPU time per instance (its association threads, and its
    publisher thread until Redis has every event): the time the publisher takes
    from the interpreter that serves DICOM. The publisher child's and Redis's CPU per
    instance are measured apart (the publishing CPU in the row's default shape).
    """
    client = redis.Redis.from_url(url)
    rates: dict[str, list[float]] = {mode: [] for mode in STORE_MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in STORE_MODES}
    child_cpu: list[float] = []
    redis_cpu: list[float] = []
    sub = Subscription(SINK, SINK, STORE_MIX)
    modes = list(STORE_MODES)
    for repeat in range(budget.store_repeats):
        for mode in modes[repeat % len(modes) :] + modes[: repeat % len(modes)]:
            folder = tmp / f"store-{rows}-{len(rates[mode])}-{modes.index(mode)}"
            settings = dict(STORE_MODES[mode])
            if mode != "off":
                settings["subscriptions"] = (sub,)
            with _edge(url, folder, **settings) as node:
                # A warm-up association first, its events published: the
                # publisher child has started (a Python start-up, about a
                # second of CPU) before the timed association begins.
                port = node.address[1]
                scus.submit(scu_store_one_association, port, WARM_UP, rows).result(RUN_TIMEOUT)
                child, more = _child_pid(node, port, scus, rows)
                # 6 lifecycle events per association and one per instance, all in Redis.
                publishing = mode != "off"
                warmed = (6 + WARM_UP + (6 + WARM_UP_MORE) * more) * publishing
                _wait(lambda: _published(node) >= warmed, "publishing")  # noqa: B023
                expected = warmed + (6 + count) * publishing
                cpu_before = time.process_time()
                others_before = [cpu_seconds(pid) for pid in (child, redis_pid) if pid]
                seconds = scus.submit(scu_store_one_association, port, count, rows).result(
                    RUN_TIMEOUT
                )
                _wait(lambda: _published(node) >= expected, "publishing")  # noqa: B023
                cpu[mode].append((time.process_time() - cpu_before) / count)
                if child:
                    child_after, redis_after = cpu_seconds(child), cpu_seconds(redis_pid)
                    child_cpu.append((child_after - others_before[0]) / count)
                    redis_cpu.append((redis_after - others_before[1]) / count)
            rates[mode].append(count / seconds)
            client.delete(SINK)
    client.close()
    rate = {mode: statistics.median(values) for mode, values in rates.items()}
    return {
        "rates": rate,
        "ratio": rate["on"] / rate["off"],
        "ratio_in_process": rate["on, in-process"] / rate["off"],
        "cpu_us": {mode: 1e6 * statistics.median(values) for mode, values in cpu.items()},
        "child_cpu_us": 1e6 * statistics.median(child_cpu),
        "redis_cpu_us": 1e6 * statistics.median(redis_cpu),
    }


# Row 5: a process that spins SPIN_SHARE of every SPIN_PERIOD seconds, the
# share of a CPU the bus's work takes at row 4's pace (about 290 us per event
# at about 1,100 events/s across the edge, its child and Redis, is 30%; this is
# half of that), optionally at SCHED_IDLE (it runs only when a CPU is idle).
SPIN_SHARE = 0.15
SPIN_PERIOD = 0.010
_SPINNER = """
import os, sys, time
share, period, seconds = (float(value) for value in sys.argv[1:4])
if sys.argv[4] == "idle":
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
end = time.monotonic() + seconds
while time.monotonic() < end:
    busy_until = time.perf_counter() + share * period
    while time.perf_counter() < busy_until:
        pass
    time.sleep((1 - share) * period)
"""
INTERFERENCE_MODES = ("alone", "beside a spinner", "beside a spinner at SCHED_IDLE")


@contextmanager
def _spinner(mode: str) -> Iterator[None]:
    if mode == "alone":
        yield
        return
    idle = "idle" if "SCHED_IDLE" in mode else "normal"
    arguments = [str(SPIN_SHARE), str(SPIN_PERIOD), str(RUN_TIMEOUT), idle]
    process = subprocess.Popen([sys.executable, "-c", _SPINNER, *arguments])
    try:
        yield
    finally:
        process.kill()
        process.wait()


def bench_interference(
    url: str, tmp: Path, scus: ProcessPoolExecutor, budget: Budget
) -> dict[str, float]:
    """Row 5: small C-STOREs into an edge with the bus off, alone and beside a process
    that spins SPIN_SHARE of the time: what CPU spent elsewhere costs this machine."""
    rates: dict[str, list[float]] = {mode: [] for mode in INTERFERENCE_MODES}
    count = budget.store_instances
    for repeat in range(budget.store_repeats):
        for mode in INTERFERENCE_MODES:
            folder = tmp / f"interference-{repeat}-{INTERFERENCE_MODES.index(mode)}"
            with _edge(url, folder, bus_enabled=False) as node:
                port = node.address[1]
                scus.submit(scu_store_one_association, port, WARM_UP, 16).result(RUN_TIMEOUT)
                with _spinner(mode):
                    seconds = scus.submit(scu_store_one_association, port, count, 16).result(
                        RUN_TIMEOUT
                    )
            rates[mode].append(count / seconds)
    return {mode: statistics.median(values) for mode, values in rates.items()}


# -- report --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# Worker shapes: one Celery worker with a prefork pool of N processes, or N
# Celery workers of one process each (solo pool: each its own consumer).
def _prefork(processes: int) -> dict[str, Any]:
    return {"processes": processes}


def _solo(workers: int) -> dict[str, Any]:
    return {"processes": 1, "pool": "solo", "count": workers}


LATENCY_SHAPES = {
    "1 worker, prefork pool of 2": _prefork(2),
    "2 workers, solo pool (up)": _solo(2),
}
CONSUME_SHAPES = {
    f"{label} {n}": shape(n)
    for label, shape in (
        ("1 worker, prefork pool of", _prefork),
        ("solo-pool workers:", _solo),
    )
    for n in (1, 2, 4)
}


def report(results: dict[str, Any]) -> None:
    print()
    print("dicombus event bus benchmark")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"  machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load}")
    for section, write in (
        ("publish", _report_publish),
        ("latency", _report_latency),
        ("consume", _report_consume),
        ("store", _report_store),
        ("interference", _report_interference),
        ("builtin", _report_builtin),
    ):
        if section in results:  # --only ran a subset
            print()
            write(results[section])


def _report_publish(rows: dict[str, Any]) -> None:
    print("1. Publish: events/s from one edge's publisher into Redis (Celery protocol-2 messages)")
    for name, row in rows.items():
        ok = row["events_per_s"] >= PUBLISH_TARGET
        print(
            f"   {name:<22} {row['events_per_s']:7.0f} events/s   target >= "
            f"{PUBLISH_TARGET:,.0f}   {_verdict(ok)}"
        )
        print(
            f"   {'':<22} {row['events']} events, {row['in_redis']} in Redis, spooled "
            f"{row['spooled']:g}"
        )
        cpu = row["cpu_us"]
        print(
            f"   {'':<22} CPU per event: publisher child {cpu['child']:.0f} us, Redis "
            f"{cpu['redis']:.0f} us, edge process {cpu['edge']:.0f} us; all "
            f"{sum(cpu.values()):.0f} us"
        )
        print(
            f"   {'':<22} stages in one process, CPU per event: data + envelope "
            f"{row['envelope_us']:.0f} us, Celery message {row['celery_message_us']:.0f} us, "
            f"publish {row['redis_us']:.0f} us + Redis {row['redis_server_us']:.0f} us"
        )


def _report_latency(rows: dict[str, Any]) -> None:
    print("2. Latency: DICOM event -> task start, one association's C-ECHOs paced at 1,000/s")
    for name, row in rows.items():
        ok = row["p99_ms"] < LATENCY_TARGET * 1000
        print(
            f"   {name:<28} {row['events']} events at {row['rate']:.0f}/s: p50 "
            f"{row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms (max {row['max_ms']:.0f} ms)"
            f"   target p99 < {LATENCY_TARGET * 1000:.0f} ms   {_verdict(ok)}"
        )


def _report_consume(rows: dict[str, Any]) -> None:
    print("3. Consume: events/s drained from a full queue (no-op task; acks late, prefetch 1)")
    for name, rate in rows.items():
        print(f"   {name:<32} {rate:7.0f} events/s")


def _report_store(rows: dict[str, Any]) -> None:
    print("4. C-STORE over one association: publishing on (lifecycle + C-STORE) vs off")
    for name, row in rows.items():
        rates, cpu = row["rates"], row["cpu_us"]
        ok = row["ratio"] >= STORE_RATIO_TARGET
        print(
            f"   {name:<22} on {rates['on']:6.0f} inst/s, off {rates['off']:6.0f} inst/s, "
            f"ratio {row['ratio']:.2f}   target >= {STORE_RATIO_TARGET}   {_verdict(ok)}"
        )
        print(
            f"   {'':<22} publishing in the edge process: {rates['on, in-process']:.0f} inst/s, "
            f"ratio {row['ratio_in_process']:.2f}"
        )
        print(
            f"   {'':<22} edge process CPU per instance: off {cpu['off']:.0f} us, on "
            f"{cpu['on']:.0f} us, in-process {cpu['on, in-process']:.0f} us"
        )
        print(
            f"   {'':<22} publisher child CPU per instance {row['child_cpu_us']:.0f} us, "
            f"Redis {row['redis_cpu_us']:.0f} us (lifecycle + C-STORE events, on)"
        )


def _report_interference(rates: dict[str, float]) -> None:
    print(
        f"5. C-STORE, bus off, beside a process spinning {SPIN_SHARE:.0%} of every "
        f"{SPIN_PERIOD * 1000:.0f} ms (what CPU spent elsewhere costs here)"
    )
    alone = rates["alone"]
    for mode, rate in rates.items():
        print(f"   {mode:<32} {rate:6.0f} inst/s   ratio {rate / alone:.2f}")


def _report_builtin(rows: dict[str, Any]) -> None:
    print("6. Built-in audit + counters: CPU of one solo-pool worker per event (C-ECHO events)")
    for mode, row in rows.items():
        ok = row["cpu_us_per_event_per_task"] <= WORKER_CPU_TARGET
        print(
            f"   {mode:<10} {row['tasks']} task(s): {row['cpu_us_per_event']:6.0f} us per event, "
            f"{row['cpu_us_per_event_per_task']:6.0f} us per event per task   target <= "
            f"{WORKER_CPU_TARGET:.0f}   {_verdict(ok)}   ({row['events']} events, "
            f"{row['events_per_s']:.0f}/s)"
        )
        redis_ok = row["redis_cpu_us_per_event"] <= REDIS_CPU_TARGET
        print(
            f"   {'':<10} Redis: {row['redis_cpu_us_per_event']:6.0f} us per event   target <= "
            f"{REDIS_CPU_TARGET:.0f}   {_verdict(redis_ok)}"
        )


SECTIONS = ("publish", "latency", "consume", "store", "interference", "builtin")


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SECTIONS)}; got {text!r}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only",
        type=_sections,
        default=SECTIONS,
        metavar="SECTIONS",
        help=f"run only these rows, comma-separated ({','.join(SECTIONS)}; default: all)",
    )
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    results: dict[str, Any] = {}
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="dicombus-bus-bench-") as folder,
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as scus,
    ):
        tmp = Path(folder)
        server = EmbeddedRedis(tmp / "redis")
        url = server.start()
        try:
            if "publish" in args.only:
                print("publish ...", flush=True)
                results["publish"] = bench_publish(url, tmp, scus, budget, server.pid or 0)
            if "latency" in args.only:
                print("latency ...", flush=True)
                results["latency"] = {
                    name: bench_latency(url, tmp, scus, budget, **shape)
                    for name, shape in LATENCY_SHAPES.items()
                }
            if "consume" in args.only:
                print("consume ...", flush=True)
                results["consume"] = {
                    name: bench_consume(url, tmp, budget, **shape)
                    for name, shape in CONSUME_SHAPES.items()
                }
            if "store" in args.only:
                print("C-STORE on/off ...", flush=True)
                results["store"] = {
                    "small (16x16, ~1 KB)": bench_store(
                        url, tmp, scus, budget, 16, budget.store_instances, server.pid or 0
                    ),
                    "CT (512x512, 512 KB)": bench_store(
                        url, tmp, scus, budget, 512, budget.store_instances // 3, server.pid or 0
                    ),
                }
            if "interference" in args.only:
                print("interference ...", flush=True)
                results["interference"] = bench_interference(url, tmp, scus, budget)
            if "builtin" in args.only:
                print("built-in tasks ...", flush=True)
                results["builtin"] = {
                    mode: bench_builtin(url, tmp, budget, mode, server.pid or 0)
                    for mode in BUILTIN_MODES
                }
        finally:
            server.stop()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
