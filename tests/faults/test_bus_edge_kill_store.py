"""A ``dicombus edge`` SIGKILLed 20 times under four C-STORE streams: no Success without its event.

The issue 8 scenario, every part real: an embedded Redis (AOF on) that the
test owns, a ``dicombus edge`` process publishing EVT_C_STORE to one static
subscription, and four of dicombus's own SCUs, each in a thread, storing
small instances one after another. The edge is SIGKILLed at a random moment
(seeded: the same schedule every run) and started again on the same data
folder and port, 20 times; an SCU that lost its association associates again
and sends again the instance it has no answer for, as a modality would.

At the end the three sets must be equal: the SOP Instance UIDs stored on disk,
those the SCUs saw answered Success, and those of the Success EVT_C_STORE
events that reached Redis. Before the journal, the response left before the
event was captured (in memory): a kill in that window lost the event of an
instance answered Success, which this test sees as a UID missing from the
events. Takes about 30-60 s.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from dicombus import AE
from dicombus.bus.redis_server import EmbeddedRedis, stable_port
from helpers import CT_IMAGE_STORAGE, free_port, small_dataset, wait_for_port
from worker_support import client_for

KILLS = 20
STREAMS = 4
SEED = 8
# The edge runs this long (uniformly drawn) between being ready and the kill:
# long enough for every stream to be storing, short enough for 20 rounds.
RUN_BEFORE_KILL = (0.1, 0.6)
QUEUE = "stored"
STOP_TIMEOUT = 30.0
# Timeouts of the SCUs: a lost edge is seen at once (the kernel closes its
# sockets); these only bound a hang.
SCU_TIMEOUT = 10.0
EVENT_WAIT = 20.0


class EdgeProcess:
    """``dicombus edge`` on a fixed port; started again after each kill."""

    def __init__(self, folder: Path, config: Path, port: int) -> None:
        self.folder, self.config, self.port = folder, config, port
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        log = (self.folder / f"edge-{self.runs}.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dicombus.cli.main", "edge", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "DICOMBUS_BROKER_URL"},
            )
        wait_for_port(self.port, timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


class StoreStream:
    """One modality: stores new instances until told to stop, each until it is answered
    Success (a lost association is made again and the unanswered instance sent again)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.successes: set[str] = set()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._store_until_stopped()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _store_until_stopped(self) -> None:
        ae = AE("MODALITY")
        ae.add_requested_context(CT_IMAGE_STORAGE)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SCU_TIMEOUT
        current = None
        deadline = time.monotonic() + 10 * STOP_TIMEOUT
        while time.monotonic() < deadline:
            if current is None:
                if self.stopping.is_set():
                    return
                current = small_dataset()
            assoc = ae.associate("127.0.0.1", self.port, ae_title="EDGE")
            if not assoc.is_established:
                time.sleep(0.02)  # the edge is restarting
                continue
            try:
                while current is not None:
                    reply = assoc.send_c_store(current)
                    if reply.get("Status") != 0:
                        break  # no answer (the edge died) or a failure: associate again
                    self.successes.add(str(current.SOPInstanceUID))
                    current = None if self.stopping.is_set() else small_dataset()
            except Exception:
                pass  # the edge died mid-message: associate again, send it again
            finally:
                if assoc.is_established:
                    assoc.release()
                else:
                    assoc.abort()
        raise AssertionError("a store stream did not finish")


def _stored_uids(storage: Path) -> set[str]:
    """SOP Instance UIDs of the instances on disk (temporary files are hidden, skipped)."""
    found = set()
    for path in storage.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            ds = pydicom.dcmread(path, specific_tags=["SOPInstanceUID"])
            found.add(str(ds.SOPInstanceUID))
    return found


def _event_uids(url: str) -> set[str]:
    """SOP Instance UIDs of the Success EVT_C_STORE events in the subscribed queue."""
    found = set()
    for raw in client_for(url).lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        (envelope,), _kwargs, _embed = json.loads(body)
        data = envelope["data"]
        if envelope["type"] == "EVT_C_STORE" and data["status"] == 0:
            found.add(data["sop_instance_uid"])
    return found


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def test_every_success_has_its_event_across_twenty_edge_kills(
    tmp_path: Path, redis_url: str
) -> None:
    # Below the ephemeral range: in the moment between a kill and the restart the
    # port is free, and a port the OS hands to another process's bind(0) could be
    # taken by it; the SCUs would then store into a stranger.
    port = stable_port(None) or free_port()
    config = tmp_path / "edge.toml"
    # publisher_process = false: twenty restarts need not start twenty publisher
    # children; the journal works the same with either sender.
    config.write_text(
        f'[edge]\nae_title = "EDGE"\nport = {port}\ndata_dir = "data"\n\n'
        f'[bus]\nbroker_url = "{redis_url}"\npublisher_process = false\n\n'
        f'[[bus.subscriptions]]\ntask = "tests.stored"\nqueue = "{QUEUE}"\n'
        'events = ["EVT_C_STORE"]\n'
    )
    edge = EdgeProcess(tmp_path, config, port)
    streams = [StoreStream(port) for _ in range(STREAMS)]
    schedule = random.Random(SEED)
    edge.start()
    try:
        for stream in streams:
            stream.thread.start()
        for _ in range(KILLS):
            time.sleep(schedule.uniform(*RUN_BEFORE_KILL))
            edge.kill()
            edge.start()
        for stream in streams:
            stream.stopping.set()
        for stream in streams:
            stream.thread.join(10 * STOP_TIMEOUT)
            assert stream.error is None, stream.error
        successes = set().union(*(stream.successes for stream in streams))
        # The events of the last run's stores reach Redis within this (bounded) wait;
        # one that was lost never does, and the assertions below name it.
        deadline = time.monotonic() + EVENT_WAIT
        while not successes <= _event_uids(redis_url) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for stream in streams:
            stream.stopping.set()
        edge.stop()
    events = _event_uids(redis_url)
    files = _stored_uids(tmp_path / "data" / "storage")
    assert len(successes) > KILLS  # the streams did store between the kills
    assert successes - events == set(), "answered Success, and no event"
    assert files == events == successes
