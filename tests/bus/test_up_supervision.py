"""``dicombus up`` owns its data folder and supervises what it starts.

Real processes throughout: ``dicombus up`` with its embedded redis-server and
Celery workers, SIGKILLed where the test says so; real associations store
through the edge and the built-in audit task records them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from dicombus.bus.edge import warn_if_exposed
from dicombus.bus.edge_config import EdgeConfig
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.redis_supervisor import RedisSupervisor
from dicombus.data_folder import NodeRecord
from helpers import free_port, pid_alive
from up_support import (
    STARTUP_TIMEOUT,
    UpProcess,
    dicombus,
    environment_without_broker,
    run_dicombus,
    stored_uids,
)
from worker_support import store, wait_for

DELIVERY_TIMEOUT = 90.0
RESTARTED = r"embedded Redis restarted as pid (\d+) on port (\d+)"


def _children(record: dict[str, object]) -> list[int]:
    workers = record["worker_pids"]
    assert isinstance(workers, list)
    return [int(record["redis_pid"]), *(int(pid) for pid in workers)]  # type: ignore[call-overload]


def test_a_second_node_on_the_folder_refuses_and_children_die_with_a_killed_up(
    tmp_path: Path,
) -> None:
    data = tmp_path / "node"
    first = UpProcess(data)
    try:
        record = first.wait_ready()
        children = _children(record)

        # While it runs, neither a second `up` nor an `edge` may use the folder.
        second = run_dicombus("up", "--port", "0", "--data", str(data))
        assert second.returncode != 0
        assert f"in use by 'dicombus up' (pid {record['pid']})" in second.stderr
        config = tmp_path / "edge.toml"
        config.write_text(f'[edge]\nport = 0\ndata_dir = "{data}"\n')
        edge = run_dicombus("edge", "--config", str(config))
        assert edge.returncode != 0
        assert "in use by 'dicombus up'" in edge.stderr

        # SIGKILL leaves `up` no chance to stop anything: the children go by themselves.
        first.kill()
        wait_for(
            lambda: not any(pid_alive(pid) for pid in children),
            "the children of the killed node to exit",
            STARTUP_TIMEOUT,
        )
    finally:
        first.kill()

    # The folder is free again, and the node comes back where clients expect it.
    again = UpProcess(data)
    try:
        record_again = again.wait_ready()
        assert record_again["redis_port"] == record["redis_port"]
        [uid] = store(again.port, 1)
        wait_for(
            lambda: uid in stored_uids(Path(record_again["audit_db"])),
            "the audit row",
            DELIVERY_TIMEOUT,
        )
    finally:
        assert again.stop() == 0


def test_a_killed_embedded_redis_is_restarted_and_every_event_is_delivered(
    tmp_path: Path,
) -> None:
    node = UpProcess(tmp_path / "node")
    stored: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def traffic(port: int) -> None:
        try:
            while not stop.is_set():
                stored.extend(store(port, 2))
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    try:
        record = node.wait_ready()
        sender = threading.Thread(target=traffic, args=(node.port,), daemon=True)
        sender.start()
        wait_for(lambda: len(stored) >= 10 or failures, "stores before the kill")
        os.kill(int(record["redis_pid"]), signal.SIGKILL)
        restarted = wait_for(
            lambda: re.search(r"embedded Redis restarted as pid (\d+) on port (\d+)", node.text),
            "the restart of Redis",
            STARTUP_TIMEOUT,
        )
        before_restart = len(stored)
        wait_for(lambda: len(stored) >= before_restart + 10 or failures, "stores after it")
        stop.set()
        sender.join(STARTUP_TIMEOUT)
        assert not failures, failures
        assert int(restarted.group(2)) == record["redis_port"]
        assert f"embedded Redis (pid {record['redis_pid']}) exited" in node.text
        assert node.record["redis_pid"] == int(restarted.group(1))
        audit_db = Path(record["audit_db"])
        wait_for(
            lambda: stored_uids(audit_db) == set(stored), "every event audited", DELIVERY_TIMEOUT
        )
    finally:
        stop.set()
        assert node.stop() == 0


README_TASK = "readme_task"


def _readme_task_module(folder: Path) -> None:
    """The README's Celery example, word for word, as a module in ``folder``."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    [example] = [block for block in blocks if "on_event" in block]
    (folder / f"{README_TASK}.py").write_text(example)


@pytest.mark.parametrize("where", ["own worker", "up --include"])
def test_the_readme_example_runs_against_up_and_commands_find_the_node_alone(
    tmp_path: Path, where: str
) -> None:
    """The README's task runs in the user's own ``dicombus worker --include`` (which finds
    the node from ./dicombus-data with no broker in its environment), or in up's workers
    with ``dicombus up --include``; ``events tail`` finds the node the same way."""
    _readme_task_module(tmp_path)
    data = tmp_path / "dicombus-data"  # the default folder, seen from tmp_path
    extra = ("--include", README_TASK) if where == "up --include" else ()
    node = UpProcess(data, *extra, cwd=tmp_path)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *arguments: str) -> Path:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as sink:
            started.append(
                subprocess.Popen(
                    dicombus(*arguments),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=environment_without_broker(),
                    cwd=tmp_path,
                )
            )
        return log

    try:
        record = node.wait_ready()
        if where == "own worker":
            # The README's command, as written.
            task_log = start("worker", "worker", "--include", README_TASK)
            wait_for(lambda: "ready" in task_log.read_text(), "the user's worker", STARTUP_TIMEOUT)
        else:
            task_log = data / "logs" / "worker-1.log"
        tail_log = start("tail", "events", "tail", "--type", "EVT_C_STORE", "--count", "1")
        wait_for(lambda: "following" in tail_log.read_text(), "the tail", STARTUP_TIMEOUT)

        [uid] = store(node.port, 1, calling="MODALITY")

        assert started[-1].wait(DELIVERY_TIMEOUT) == 0
        assert "MODALITY" in tail_log.read_text()

        # The task prints the calling AE title, the modality and the status.
        def task_output() -> str:
            logs = [task_log, *(data / "logs").glob("worker-*.log")]
            return "".join(log.read_text(errors="replace") for log in logs if log.exists())

        # (Celery logs each printed word as a line of its own.)
        wait_for(
            lambda: all(f"] {word}\n" in task_output() for word in ("MODALITY", "CT", "0")),
            "the README task's output",
        )
        assert f"{README_TASK}.route" in task_output()
        wait_for(lambda: uid in stored_uids(Path(record["audit_db"])), "the audit row")
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(STARTUP_TIMEOUT)
        assert node.stop() == 0


def test_the_embedded_redis_needs_the_secret_and_phi_stays_private(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = UpProcess(data)
    try:
        record = node.wait_ready()
        [uid] = store(node.port, 1)
        wait_for(lambda: uid in stored_uids(Path(record["audit_db"])), "the audit row")
        port = int(record["redis_port"])
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        secret = (data / "redis.secret").read_text().strip()
        assert secret and secret in record["broker_url"]
        # The password is in a 0600 file, not on a command line every user can read.
        cmdline = Path(f"/proc/{record['redis_pid']}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert "***" in node.text and secret not in node.text
    finally:
        assert node.stop() == 0
    # PHI everywhere: instances, outbox, audit store, the AOF, logs, the node record.
    assert (data / "redis" / "appendonly.aof").exists() or list((data / "redis").glob("*.aof"))
    for path in [data, *data.rglob("*")]:
        mode = path.lstat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path.relative_to(tmp_path)} is {oct(mode)}"


def test_up_takes_the_edge_configuration(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        '[edge]\nid = "ct-edge"\nae_title = "CFGEDGE"\n\n'
        '[accept]\ncalling_ae_titles = ["MODALITY"]\n'
    )
    node = UpProcess(tmp_path / "node", "--config", str(config))
    try:
        node.wait_ready()
        assert "AE title:  CFGEDGE" in node.text
        with pytest.raises(AssertionError):
            store(node.port, 1, calling="STRANGER")
        assert len(store(node.port, 1, calling="MODALITY")) == 1
    finally:
        assert node.stop() == 0


def test_up_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("[edge]\nport = 11112\n\n[accept]\ncalling_ae_title = ['X']\n")
    result = run_dicombus("up", "--config", str(config), "--data", str(tmp_path / "node"))
    assert result.returncode != 0
    assert "edge.toml:5: [accept] calling_ae_title: unknown key" in result.stderr


@pytest.mark.parametrize(
    ("bind", "titles", "warned"),
    [
        ("0.0.0.0", (), True),
        ("192.0.2.10", (), True),
        ("0.0.0.0", ("MODALITY",), False),
        ("127.0.0.1", (), False),
        ("::1", (), False),
        ("localhost", (), False),
    ],
)
def test_listening_beyond_loopback_without_allow_list_or_tls_warns(
    bind: str, titles: tuple[str, ...], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="dicombus.bus.edge"):
        warn_if_exposed(EdgeConfig(bind=bind, calling_ae_titles=titles))
    assert ("SECURITY" in caplog.text) is warned


def test_a_redis_that_dies_again_soon_is_restarted_after_a_growing_delay(
    tmp_path: Path,
) -> None:
    """No restart loop: a server dying right after its start waits 1 s, then 2 s ..."""
    lines: list[str] = []
    server = EmbeddedRedis(tmp_path / "redis")
    supervisor = RedisSupervisor(server, lines.append)
    try:
        server.start()

        def kill_soon_after_start() -> None:
            supervisor.started = time.monotonic()  # it has just started (again)
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
            wait_for(
                lambda: supervisor.check() is False and supervisor.down_since is not None,
                "the death of Redis noticed",
            )

        kill_soon_after_start()
        assert "exited with status -9; starting it again in 1 s" in lines[-1]
        assert supervisor.check() is False  # not before its time
        supervisor.retry_at = 0.0  # the time has come
        assert supervisor.check() is True
        assert server.pid is not None and server.exited() is None
        assert f"restarted as pid {server.pid}" in lines[-1]
        kill_soon_after_start()
        assert "starting it again in 2 s" in lines[-1]
    finally:
        server.stop()


def test_a_redis_that_cannot_start_is_retried_later_with_the_reason(tmp_path: Path) -> None:
    lines: list[str] = []
    server = EmbeddedRedis(tmp_path / "redis")
    supervisor = RedisSupervisor(server, lines.append)
    server.start()
    port = server.port
    supervisor.started = 0.0  # long ago: the first death is answered at once
    # Its port taken by another program meanwhile: the start fails, and is retried later.
    with socket.socket() as squatter:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_for(lambda: _bound(squatter, port), "the port of the dead server")
        squatter.listen()
        wait_for(
            lambda: supervisor.check() is False and supervisor.down_since is not None,
            "the death of Redis noticed",
        )
        assert "starting it again now" in lines[0]
        assert "could not start again" in lines[-1] and "trying again in 1 s" in lines[-1]
    supervisor.retry_at = 0.0
    try:
        assert supervisor.check() is True
        assert server.port == port
    finally:
        server.stop()


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_dicombus_edge_restarts_its_embedded_redis(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nport = 0\ndata_dir = "{tmp_path / "node"}"\n')
    output = tmp_path / "edge.out"
    with output.open("wb") as sink:
        edge = subprocess.Popen(
            dicombus("edge", "--config", str(config)),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment_without_broker(),
        )
    try:
        wait_for(lambda: "Press Ctrl-C" in output.read_text(), "the edge", STARTUP_TIMEOUT)
        record = json.loads((tmp_path / "node" / "node.json").read_text())
        os.kill(record["redis_pid"], signal.SIGKILL)
        restarted = wait_for(
            lambda: re.search(
                r"embedded Redis restarted as pid (\d+) on port (\d+)", output.read_text()
            ),
            "the restart of Redis",
            STARTUP_TIMEOUT,
        )
        assert int(restarted.group(2)) == record["redis_port"]
        wait_for(
            lambda: (
                json.loads((tmp_path / "node" / "node.json").read_text())["redis_pid"]
                == int(restarted.group(1))
            ),
            "the node record",
        )
        port = int(record["address"][1])
        assert len(store(port, 1)) == 1
    finally:
        edge.send_signal(signal.SIGINT)
        assert edge.wait(STARTUP_TIMEOUT) == 0


def test_commands_say_when_the_recorded_node_is_not_running(tmp_path: Path) -> None:
    data = tmp_path / "node"
    data.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = NodeRecord(
        command="up",
        pid=gone.pid,
        broker_url=f"redis://:secret@127.0.0.1:{free_port()}/0",
        embedded_redis=True,
    )
    (data / "node.json").write_text(record.to_json())
    result = run_dicombus("events", "tail", "--data", str(data), "--count", "1")
    assert result.returncode != 0
    assert f"pid {gone.pid}) is not running" in result.stderr
    assert "secret" not in result.stderr
