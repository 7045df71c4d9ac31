"""The dashboard's web app (Starlette): the page, its static files, and the JSON API the
page itself reads (docs/analytics.md#dashboard).

Endpoints are plain functions: Starlette runs them in its thread pool, so the blocking
Redis and SQLite reads never hold up the event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dicombus.dashboard.edges import edges_view
from dicombus.dashboard.events import EventFilter, EventFilterError, recent_events
from dicombus.dashboard.queues import WorkerDirectory, queues_view
from dicombus.dashboard.routing import RoutingUnavailable, RoutingView
from dicombus.metrics.snapshot import read_snapshot

if TYPE_CHECKING:
    import redis

STATIC = Path(__file__).resolve().parent / "static"
# A replay names at most this many instances: a request body stays small.
MAX_REPLAY_UIDS = 10_000


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the dashboard reads: the broker's Redis and the workers' two SQLite stores."""

    client: redis.Redis
    workers: WorkerDirectory
    audit_db: Path
    routing: RoutingView


def create_app(sources: Sources) -> Starlette:
    def edges(request: Request) -> JSONResponse:
        now = datetime.now(UTC)
        return JSONResponse(edges_view(sources.client, read_snapshot(sources.client, now), now))

    def queues(request: Request) -> JSONResponse:
        snapshot = read_snapshot(sources.client, datetime.now(UTC))
        return JSONResponse(queues_view(snapshot, sources.workers.by_queue()))

    def routing(request: Request) -> JSONResponse:
        snapshot = read_snapshot(sources.client, datetime.now(UTC))
        return JSONResponse(sources.routing.view(snapshot.breakers))

    async def retry(request: Request) -> JSONResponse:
        try:
            uids, destination = _replay_request(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            replayed = await run_in_threadpool(sources.routing.replay, uids, destination)
        except RoutingUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        found = {d.sop_instance_uid for d in replayed}
        return JSONResponse(
            {
                "replayed": [
                    {"sop_instance_uid": d.sop_instance_uid, "destination": d.destination}
                    for d in replayed
                ],
                "not_dead_letters": sorted(set(uids or ()) - found),
            }
        )

    def events(request: Request) -> JSONResponse:
        try:
            wanted = EventFilter.from_query(dict(request.query_params))
        except EventFilterError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(recent_events(sources.audit_db, wanted))

    def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/edges", edges),
            Route("/api/queues", queues),
            Route("/api/routing", routing),
            Route("/api/routing/retry", retry, methods=["POST"]),
            Route("/api/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


def _replay_request(body: bytes) -> tuple[list[str] | None, str | None]:
    """``{"uids": [...]}`` or ``{"all": true}``, optionally ``"destination"``: as the
    arguments of ``dicombus routes retry``."""
    try:
        found: Any = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(found, dict):
        raise ValueError('the body is a JSON object: {"uids": [...]} or {"all": true}')
    uids, every = found.get("uids"), found.get("all") is True
    destination = found.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise ValueError("destination: expected a destination's name")
    if every == bool(uids):
        raise ValueError("name the SOP Instance UIDs to replay (uids), or all: true")
    if every:
        return None, destination
    if (
        not isinstance(uids, list)
        or len(uids) > MAX_REPLAY_UIDS
        or not all(isinstance(uid, str) for uid in uids)
    ):
        raise ValueError(f"uids: expected a list of up to {MAX_REPLAY_UIDS} SOP Instance UIDs")
    return uids, destination
