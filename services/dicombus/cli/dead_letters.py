"""``dicombus dead-letters``: see and replay the events tasks gave up on.

A task that exhausts its retries, or fails with an error it does not retry,
leaves the event in its dead-letter list in the broker's Redis
(:mod:`dicombus.bus.dead_letters`). ``list`` and ``count`` show them;
``replay`` sends each again to its task's queue, as the edge sent it (same
event id, same task id), and removes it only once Redis took the message;
``purge`` deletes a task's dead letters for good. The broker is the one
``dicombus events tail`` follows.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dicombus.cli.common import ExitCode, add_data_option, error
from dicombus.data_folder import broker_url_for, redact

if TYPE_CHECKING:
    import redis

    from dicombus.bus.dead_letters import StoredLetter

COMMAND = "dead-letters"
# Seconds to connect to Redis or hear from it: a command, not a service, so fail fast.
REDIS_TIMEOUT = 5.0
# Columns of the table ``list`` prints (the error takes the rest of the line).
COLUMNS = (("time", 27), ("task", 24), ("event type", 18), ("event id", 26), ("tries", 5))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="list and replay the events tasks gave up on",
        description="Events a task gave up on (retries exhausted, or an error it does not "
        "retry) wait in Redis as dead letters; list, count, replay or purge them.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show the dead letters, oldest first")
    _task_option(listing)
    listing.add_argument(
        "--json", action="store_true", help="print each dead letter as a JSON line"
    )
    listing.set_defaults(run=run_list)
    counting = actions.add_parser("count", help="how many dead letters each task has")
    _task_option(counting)
    counting.set_defaults(run=run_count)
    replay = actions.add_parser(
        "replay",
        help="send dead letters to their task's queue again, then remove them",
        description="Send each dead letter to its task's queue with the same event id "
        "(a task idempotent by event id does nothing twice) and remove it once Redis "
        "took the message.",
    )
    _task_option(replay)
    replay.add_argument("--id", dest="event_id", metavar="EVENT_ID", help="only this event")
    replay.set_defaults(run=run_replay)
    purge = actions.add_parser("purge", help="delete a task's dead letters for good")
    _task_option(purge, required=True)
    purge.set_defaults(run=run_purge)


def _task_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--task",
        required=required,
        metavar="NAME",
        help="the task's name (e.g. dicombus.audit)" + ("" if required else "; default: all"),
    )
    add_data_option(parser)


def run_list(args: argparse.Namespace) -> int:
    def show(client: redis.Redis) -> int:
        letters = _letters(client, args.task)
        if args.json:
            for stored in letters:
                print(stored.letter.to_json())
            return ExitCode.OK
        print(_row([name for name, _ in COLUMNS] + ["error"]))
        for stored in letters:
            letter = stored.letter
            print(
                _row(
                    [
                        letter.time,
                        letter.task,
                        letter.event_type,
                        letter.event_id,
                        str(letter.attempts),
                        letter.error.splitlines()[0] if letter.error else "",
                    ]
                )
            )
        print(f"{len(letters)} dead letters", file=sys.stderr)
        return ExitCode.OK

    return _with_broker("list", args, show)


def run_count(args: argparse.Namespace) -> int:
    from dicombus.bus.dead_letters import count, tasks

    def show(client: redis.Redis) -> int:
        for task in [args.task] if args.task else tasks(client):
            print(f"{task}\t{count(client, task)}")
        return ExitCode.OK

    return _with_broker("count", args, show)


def run_replay(args: argparse.Namespace) -> int:
    from dicombus.bus.dead_letters import remove
    from dicombus.bus.sender import Broker, TaskMessageBuilder, describe
    from dicombus.bus.subscriptions import Subscription

    def replay(client: redis.Redis) -> int:
        letters = _letters(client, args.task)
        if args.event_id:
            letters = [s for s in letters if s.letter.event_id == args.event_id]
            if not letters:
                error(f"{COMMAND} replay", f"no dead letter has event id {args.event_id!r}")
                return ExitCode.FAILED
        builder = TaskMessageBuilder(origin=f"dicombus-{COMMAND}@{socket.gethostname()}")
        broker = Broker(broker_url_for(args.data), timeout=REDIS_TIMEOUT)
        replayed, status = 0, ExitCode.OK
        try:
            for stored in letters:
                letter = stored.letter
                if not letter.event_id or not letter.event_type:
                    error(f"{COMMAND} replay", f"{letter.task}: no event envelope; kept")
                    status = ExitCode.FAILED
                    continue
                target = Subscription(letter.task, letter.queue, frozenset())
                message = builder.build(letter.envelope, target, order=0, created=time.time())
                try:
                    broker.publish([message])
                except Exception as exc:  # kombu and redis-py raise their own kinds
                    error(f"{COMMAND} replay", f"Redis did not take the message: {describe(exc)}")
                    return ExitCode.LOCAL_ERROR
                # Only now: a dead letter leaves Redis once its message is in Redis.
                remove(client, stored)
                replayed += 1
                print(f"replayed {letter.event_type} {letter.event_id} to {letter.task}")
        finally:
            broker.close()
            print(f"{replayed} dead letters replayed", file=sys.stderr)
        return status

    return _with_broker("replay", args, replay)


def run_purge(args: argparse.Namespace) -> int:
    from dicombus.bus.dead_letters import purge

    def delete(client: redis.Redis) -> int:
        print(f"{purge(client, args.task)} dead letters of {args.task} deleted")
        return ExitCode.OK

    return _with_broker("purge", args, delete)


def _letters(client: redis.Redis, task: str | None) -> list[StoredLetter]:
    """The dead letters of ``task`` (or of every task); unreadable entries are reported."""
    from dicombus.bus.dead_letters import read, tasks

    letters: list[StoredLetter] = []
    for name in [task] if task else tasks(client):
        found, problems = read(client, name)
        letters.extend(found)
        for problem in problems:
            error(COMMAND, f"{problem}; left as it is")
    return letters


def _with_broker(action: str, args: argparse.Namespace, work: Callable[[redis.Redis], int]) -> int:
    """Run ``work`` with a client for the broker; an unreachable Redis is a clear error."""
    import redis

    from dicombus.bus.redis_server import broker_client

    url = broker_url_for(args.data)
    client = broker_client(url, timeout=REDIS_TIMEOUT)
    try:
        return work(client)
    except redis.exceptions.RedisError as exc:
        error(f"{COMMAND} {action}", f"cannot reach Redis at {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    finally:
        client.close()


def _row(cells: list[str]) -> str:
    widths = [width for _, width in COLUMNS]
    fixed = "  ".join(cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=True))
    return f"{fixed}  {cells[-1]}"
