"""The task base class that keeps an event a task gave up on as a dead letter.

Celery calls ``on_failure`` once a task has failed for good: its autoretries
are exhausted, or it raised an error it does not retry (a retry still to come
is not a failure). With ``task_acks_on_failure_or_timeout`` the message is
then acknowledged, so without this the event would be recorded nowhere.
:class:`DeadLetterTask` pushes it, with the error and the number of attempts,
to the task's dead-letter list in the broker's Redis
(:mod:`dicombus.bus.dead_letters`) before the worker acknowledges the message.

If Redis does not take the dead letter, the whole entry is logged at
CRITICAL level (the event is in the worker's log); the acknowledgement then
goes to the same unreachable Redis, and a message that was never acknowledged
is handed out again after the visibility timeout.

Every ``@on_event`` task has this base unless made with ``dead_letter=False``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import Task
from dicombus.bus.dead_letters import DeadLetter, push
from dicombus.bus.envelope import format_time
from redis.exceptions import RedisError

from dicombus_workers.app import DEFAULT_QUEUE
from dicombus_workers.idempotency import redis_client
from dicombus_workers.task_outcomes import DEAD_LETTER, record

LOGGER = logging.getLogger("dicombus_workers.dead_letter")


class DeadLetterTask(Task):  # type: ignore[misc]
    """A Celery task whose final failure leaves a dead letter in Redis."""

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,  # billiard's ExceptionInfo (untyped)
    ) -> None:
        self.keep_dead_letter(
            _envelope(args, kwargs),
            error=f"{type(exc).__name__}: {exc}",
            attempts=int(self.request.retries or 0) + 1,
            traceback_text=str(einfo.traceback) if einfo is not None else "",
        )

    def keep_dead_letter(
        self, envelope: dict[str, Any], *, error: str, attempts: int, traceback_text: str
    ) -> None:
        """Push one event this task gave up on to its dead-letter list (or log it whole)."""
        letter = DeadLetter(
            task=self.name,
            queue=self.routed_queue(),
            envelope=envelope,
            error=error,
            attempts=attempts,
            time=format_time(datetime.now(UTC)),
            traceback=traceback_text,
        )
        record(self.name, DEAD_LETTER)
        try:
            push(redis_client(), letter)
        except RedisError as redis_error:
            LOGGER.critical(
                "could not keep a dead letter (%s); the entry is: %s",
                redis_error,
                letter.to_json(),
            )
            return
        LOGGER.error(
            "%s gave up on %s %s after %d attempts (%s); kept as a dead letter",
            letter.task,
            letter.event_type,
            letter.event_id,
            letter.attempts,
            letter.error,
        )

    def routed_queue(self) -> str:
        """The queue this task's messages go to (on_event routes each task); a replay goes there."""
        route = self.app.conf.task_routes.get(self.name) or {}
        return str(route.get("queue") or DEFAULT_QUEUE)


def _envelope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The event envelope, the message's only argument; anything else kept whole."""
    if len(args) == 1 and not kwargs and isinstance(args[0], dict):
        return args[0]
    return {"args": list(args), "kwargs": kwargs}
