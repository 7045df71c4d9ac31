"""The dead-letter lists in a real Redis, and the bad input around them, without workers."""

from __future__ import annotations

import pytest
import redis
from celery import Task
from dicombus import evt
from dicombus.bus import dead_letters
from dicombus.bus.dead_letters import DeadLetter, DeadLetterError
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.cli.main import main
from dicombus_workers import on_event
from dicombus_workers.app import DEFAULT_TASK_MAX_RETRIES, task_max_retries


def letter(event_id: str, task: str = "tests.task") -> DeadLetter:
    return DeadLetter(
        task=task,
        queue="tests.queue",
        envelope={"id": event_id, "type": "EVT_C_STORE"},
        error="OperationalError: unable to open database file",
        attempts=31,
        time="2026-11-22T21:00:00.000000Z",
    )


def test_push_read_remove_keep_the_task_listed_while_it_has_letters(
    redis_server: EmbeddedRedis,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    dead_letters.push(client, letter("A"))
    dead_letters.push(client, letter("B"))
    assert dead_letters.tasks(client) == ["tests.task"]
    found, problems = dead_letters.read(client, "tests.task")
    assert [stored.letter for stored in found] == [letter("A"), letter("B")] and not problems
    assert dead_letters.remove(client, found[0])
    assert not dead_letters.remove(client, found[0])  # already gone
    assert dead_letters.tasks(client) == ["tests.task"]
    assert dead_letters.remove(client, found[1])
    assert dead_letters.tasks(client) == [] and dead_letters.count(client, "tests.task") == 0


def test_an_unreadable_entry_is_reported_and_left_in_place(
    redis_server: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    dead_letters.push(client, letter("A"))
    client.rpush(dead_letters.key_for("tests.task"), "not json", '{"format": 99}')
    monkeypatch.setenv("DICOMBUS_BROKER_URL", redis_server.url)
    assert main(["dead-letters", "list", "--json"]) == 0
    captured = capsys.readouterr()
    assert [DeadLetter.from_json(line) for line in captured.out.splitlines()] == [letter("A")]
    assert "entry 2: not JSON" in captured.err and "entry 3: not a dead letter" in captured.err
    assert dead_letters.count(client, "tests.task") == 3


def test_malformed_dead_letters_raise_a_typed_error() -> None:
    for text in (
        "[]",
        '{"format": 1}',
        '{"format": 1, "task": "t", "queue": "q", '
        '"envelope": [], "error": "", "attempts": 1, "time": ""}',
    ):
        with pytest.raises(DeadLetterError):
            DeadLetter.from_json(text)


def test_the_replay_command_names_an_unknown_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    monkeypatch.setenv("DICOMBUS_BROKER_URL", "redis://127.0.0.1:9/0")
    assert main(["dead-letters", "replay"]) == 4
    assert "cannot reach Redis at redis://127.0.0.1:9/0" in capsys.readouterr().err


def test_max_retries_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOMBUS_TASK_MAX_RETRIES", raising=False)
    assert task_max_retries() == DEFAULT_TASK_MAX_RETRIES == 30
    monkeypatch.setenv("DICOMBUS_TASK_MAX_RETRIES", "0")
    assert task_max_retries() == 0
    monkeypatch.setenv("DICOMBUS_TASK_MAX_RETRIES", "-1")
    with pytest.raises(ValueError, match="DICOMBUS_TASK_MAX_RETRIES='-1' is not a whole number"):
        task_max_retries()


def test_a_custom_base_must_keep_dead_letters_or_opt_out() -> None:
    with pytest.raises(ValueError, match="subclass it, or pass dead_letter=False"):
        on_event(evt.EVT_C_ECHO, name="tests.custom_base", base=Task)(lambda event: None)
