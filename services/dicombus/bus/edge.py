"""EdgeNode: a Storage and Verification SCP whose events flow to Celery through Redis.

The parts, in the order :meth:`EdgeNode.start` builds them:

1. the broker: ``config.broker_url``, else ``DICOMBUS_BROKER_URL``, else an
   embedded ``redis-server`` with its data in ``<data_dir>/redis``;
2. the :class:`~dicombus.bus.subscriptions.SubscriptionView` (static
   subscriptions from the config plus the registry in Redis), the durable
   :class:`~dicombus.bus.outbox.Outbox`, the
   :class:`~dicombus.bus.journal.Journal` and the
   :class:`~dicombus.bus.publisher.Publisher`, which submits again what a
   killed run left in the journal;
3. the AE and its server, storing each instance durably before it answers
   (:func:`dicombus.storage_handler.handle_store`, which records ``stored_path``
   and ``stored_size`` in the outcome); with ``[query_retrieve]`` on (the
   default), each stored instance is also queued for the index before the
   answer, and written by the index's writer thread or by the next read,
   whichever comes first (:class:`~dicombus.qr.archive.IndexedStorage`,
   brought up to date with the storage folder at start; its queue is written
   on stop), and the same AE serves C-FIND, C-GET, C-MOVE
   (:class:`~dicombus.qr.scp.QueryRetrieveSCP`) and Storage Commitment
   (:class:`~dicombus.qr.commitment.StorageCommitmentSCP`) from that index;
4. the :class:`~dicombus.bus.capture.EventCapture`, bound on the server for
   exactly the event types somebody subscribes to, rebound whenever the
   subscriptions change. A C-STORE answered Success has its event in the
   journal before the response leaves, so it is published whatever instant
   the edge dies.

Once it listens, the node publishes ``dicombus.node.started``
(:mod:`dicombus.bus.node_events`); on stop, ``dicombus.node.stopped`` once the
server has stopped, before the publisher flushes.

While the outbox is over its disk limit, or cannot store at all (disk full:
the publisher holds events in memory), or the disk reserve
(:mod:`dicombus.bus.disk_reserve`) had to be released, the server turns new
associations away with a transient rejection (PS3.8: rejected-transient,
temporary congestion), so events are never dropped: a modality retries later,
and the associations already running finish and spool their events. Should
the publisher's hold reach its limit all the same, it is saturated: stores
answer 0xA700 and the running associations are aborted, so no more events
come (see :meth:`EdgeNode._abort_associations`).

:meth:`stop` goes in reverse: the server stops and aborts what still runs
(those events are captured too), the publisher flushes its queue to Redis or
the outbox, and the embedded Redis stops last.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from types import TracebackType

from dicombus import evt, tls
from dicombus.ae import AE
from dicombus.bus.capture import EventCapture
from dicombus.bus.disk_reserve import RESERVE_FILE, DiskReserve
from dicombus.bus.edge_config import EdgeConfig
from dicombus.bus.envelope import retrieve_uri
from dicombus.bus.held_file import HELD_FILE, replay_held
from dicombus.bus.journal import Journal, JournalError
from dicombus.bus.node_events import NODE_STARTED, NODE_STOPPED, node_event
from dicombus.bus.outbox import Outbox
from dicombus.bus.publisher import Publisher, PublisherSaturated
from dicombus.bus.redis_server import (
    EmbeddedRedis,
    broker_url_from_env_or_embedded,
    stable_port,
)
from dicombus.bus.subscriptions import SubscriptionView
from dicombus.data_folder import DataFolder
from dicombus.metrics.heartbeat import EdgeHeartbeat
from dicombus.qr.archive import IndexedStorage
from dicombus.qr.commitment import StorageCommitmentSCP
from dicombus.qr.index import Level
from dicombus.qr.scp import QueryRetrieveSCP, support_query_retrieve
from dicombus.server import AssociationServer
from dicombus.sop_class import StorageCommitmentPushModel, Verification
from dicombus.storage_files import prepare_storage_root
from dicombus.storage_handler import handle_store

LOGGER = logging.getLogger("dicombus.bus.edge")

OUTBOX_FULL = "the event outbox is full: temporary congestion"
JOURNAL_FOLDER = "journal"  # in the data folder (an earlier journal.sqlite3 is upgraded)
# The publisher gets this long to hand its queue to Redis or the outbox on stop.
PUBLISHER_STOP_TIMEOUT = 10.0


class EdgeNode:
    """One edge node built from an :class:`EdgeConfig`; ``start()`` / ``stop()``."""

    def __init__(self, config: EdgeConfig, *, folder: DataFolder | None = None) -> None:
        """``folder``: the data folder, locked by the caller; an embedded Redis then gets
        its password and keeps the folder locked until it has exited."""
        self.config = config
        self.folder = folder
        self.ae = build_ae(config)
        self.server: AssociationServer | None = None
        self.publisher: Publisher | None = None
        self.capture: EventCapture | None = None
        self.view: SubscriptionView | None = None
        self.embedded_redis: EmbeddedRedis | None = None
        self.journal: Journal | None = None
        self.outbox: Outbox | None = None
        self.reserve: DiskReserve | None = None
        self.broker_url: str | None = None
        self.archive: IndexedStorage | None = None
        self.commitment: StorageCommitmentSCP | None = None
        self.heartbeat: EdgeHeartbeat | None = None
        self._capture_lock = threading.Lock()
        self._refusing = False
        self._announced = False  # the node started listening: dicombus.node.stopped is due

    @property
    def address(self) -> tuple[str, int]:
        if self.server is None:
            raise RuntimeError("the edge node is not running")
        return self.server.server_address

    def start(self) -> None:
        config = self.config
        warn_if_exposed(config)
        # Before anything listens: an unusable root fails here, naming its key,
        # and whatever a killed node left half-written is swept away.
        self.ae.spool_directory = prepare_storage_root(config.storage, "[storage] root")
        try:
            if config.query_retrieve:
                self._open_archive()
            if config.bus_enabled:
                self._start_bus()
            self._start_server()
            if self.broker_url is not None:
                self._start_heartbeat(self.broker_url)
            self._announce(NODE_STARTED)
            self._announced = True
        except BaseException:
            self.stop()
            raise

    def _open_archive(self) -> None:
        """The index of the storage folder, brought up to date before anything is served:
        a file stored while the index lost its row (a crash between the two) is indexed,
        a row whose file is gone is dropped."""
        config = self.config
        self.archive = archive = IndexedStorage(
            config.storage, config.index, layout=config.layout, duplicates=config.duplicates
        )
        report = archive.open()
        LOGGER.info(
            "index %s: %d instances (%d newly indexed, %d gone)",
            config.index,
            archive.index.count(Level.IMAGE),
            report.indexed,
            report.removed,
        )

    def _start_bus(self) -> None:
        config = self.config
        if config.broker_url:
            self.broker_url = config.broker_url
        else:
            folder = self.folder
            self.broker_url, self.embedded_redis = broker_url_from_env_or_embedded(
                config.data_dir / "redis",
                password=folder.redis_secret() if folder is not None else None,
                port=stable_port(_recorded_redis_port(folder)) if folder is not None else 0,
                inherit_fds=(folder.lock_fd,) if folder is not None else (),
            )
        self.view = SubscriptionView(
            self.broker_url,
            static=config.subscriptions,
            cache_path=config.data_dir / "subscriptions.json",
            on_change=self._subscriptions_changed,
        )
        # FULL: the publisher forgets a Success's journal row (fsynced) as soon as its
        # messages are in the outbox, so an outbox commit must be on disk too, or a
        # power cut just after it loses the event (docs/bus.md, "Durability").
        self.outbox = outbox = Outbox(
            config.outbox, max_bytes=config.outbox_max_bytes, synchronous="FULL"
        )
        # What the last stop could not store, before the publisher numbers new events
        # after the outbox's highest; before the reserve takes the disk space.
        replay_held(config.data_dir / HELD_FILE, outbox)
        self.reserve = DiskReserve(config.data_dir / RESERVE_FILE, config.reserve_bytes)
        if not self.reserve.take():
            LOGGER.error(
                "no room for the disk reserve %s (%d bytes, [bus] reserve_bytes): "
                "associations are refused until the disk has room for it",
                self.reserve.path,
                self.reserve.size,
            )
        self.journal = Journal(config.data_dir / JOURNAL_FOLDER)
        self.publisher = Publisher(
            self.broker_url,
            self.view,
            outbox,
            queue_size=config.queue_size,
            batch_size=config.batch_size,
            publisher_process=config.publisher_process,
            journal=self.journal,
            reserve=self.reserve,
            held_file=config.data_dir / HELD_FILE,
            on_saturated=self._abort_associations,
        )
        self.capture = EventCapture(
            edge_id=config.edge_id,
            sink=self.publisher.submit,
            wants=self.view.wants,
            bulk_data_uri_base=config.storage.resolve().as_uri(),
            bulk_threshold=config.bulk_threshold,
            raw_wanted=self.view.raw_wanted,
            durable_sink=self.publisher.submit_durable,
        )
        # The view first: the capture binds what it says is wanted.
        self.view.start()
        self.publisher.start()
        # Before the server accepts anything: these are older than any new event.
        self.publisher.resubmit_journaled()

    def _start_heartbeat(self, broker_url: str) -> None:
        """Outbox depth and publisher lag in Redis, for ``dicombus metrics`` on any host."""
        host, port = self.address[:2]
        self.heartbeat = EdgeHeartbeat(
            broker_url,
            self.config.edge_id,
            self.metrics,
            {"ae_title": self.ae.ae_title, "address": f"{host}:{port}"},
        )
        self.heartbeat.start()

    def _start_server(self) -> None:
        config = self.config
        handlers: list[evt.HandlerBinding]
        if self.archive is None:
            handlers = [
                (evt.EVT_C_STORE, handle_store, [config.storage, config.layout, config.duplicates])
            ]
        else:
            index = self.archive.index
            query_retrieve = QueryRetrieveSCP(
                index, ae_title=config.ae_title, destinations=config.move_destinations
            )
            self.commitment = StorageCommitmentSCP(
                index, ae_title=config.ae_title, destinations=config.move_destinations
            )
            handlers = [
                (evt.EVT_C_STORE, self.archive.handle_store),
                *query_retrieve.handlers(),
                *self.commitment.handlers(),
            ]
        server = self.ae.start_server(
            (config.bind, config.port),
            block=False,
            ssl_context=server_ssl_context(config),
            evt_handlers=handlers,
        )
        self.server = server
        if self.capture is not None:
            if self.archive is not None:
                self.capture.retrieve_uri = retrieve_uri(
                    self.ae.ae_title,
                    advertised_host(config),
                    server.server_address[1],
                    tls=config.tls is not None,  # [tls]: the listener speaks only TLS
                )
            server.admission_check = self._admission
            with self._capture_lock:
                self.capture.attach(server)
        LOGGER.info(
            "edge %s: %s on %s:%s, storing to %s",
            config.edge_id,
            self.ae.ae_title,
            *server.server_address,
            config.storage,
        )

    def _announce(self, event_type: str) -> None:
        """Publish ``dicombus.node.started`` / ``stopped`` (:mod:`dicombus.bus.node_events`),
        journaled like a Success's event: a node killed just after is still reported."""
        if self.publisher is None or self.server is None or self.view is None:
            return
        # Like every event: built only when a task subscribed to it (the ATNA task).
        if not self.view.wants(event_type):
            return
        host, port = self.server.server_address[:2]
        pending = node_event(
            event_type, edge_id=self.config.edge_id, ae_title=self.ae.ae_title, host=host, port=port
        )
        try:
            self.publisher.submit_durable(pending)
        except (JournalError, PublisherSaturated) as exc:
            LOGGER.error("cannot keep %s: %s", event_type, exc)

    def _subscriptions_changed(self) -> None:
        # Called from the view's thread; the capture is attached once the server runs.
        with self._capture_lock:
            if self.capture is not None and self.server is not None:
                self.capture.refresh()

    def _admission(self) -> str | None:
        full = self.publisher is not None and self.publisher.congested
        if full != self._refusing:
            self._refusing = full
            if full:
                LOGGER.error("the event outbox is full or cannot store: refusing new associations")
            else:
                LOGGER.warning("the event outbox has room again: accepting associations")
        return OUTBOX_FULL if full else None

    def _abort_associations(self) -> None:
        """The publisher holds all it may in memory: abort every running association,
        so that no more events come (PS3.8 7.3: A-ABORT, the service user's own).

        Chosen over answering the following requests with failures alone: notification
        events (PDUs, DIMSE messages, echoes) keep coming from a running association
        whatever it is answered, and each of them would have to be held. An aborted
        modality sends again what it had no Success for, once the transient rejects
        stop. Runs on a thread of its own: an association thread (spooling its own
        event) cannot wait for itself to end."""
        server = self.server
        if server is None:
            return
        running = server.active_associations
        LOGGER.error("aborting %d running associations: events cannot be stored", len(running))
        for assoc in running:
            threading.Thread(target=assoc.abort, name="dicombus-abort", daemon=True).start()

    def metrics(self) -> dict[str, float]:
        return self.publisher.metrics() if self.publisher is not None else {}

    def stop(self) -> dict[str, float]:
        """Stop in reverse order of start (safe to repeat); return the final publisher metrics."""
        final: dict[str, float] = {}
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if self.server is not None:
            self.server.shutdown()
            if self._announced:
                self._announce(NODE_STOPPED)
        if self.commitment is not None:
            self.commitment.close()  # the reports being sent go out first
        if self.archive is not None:
            self.archive.close()
        with self._capture_lock:
            if self.capture is not None:
                self.capture.detach()
        if self.publisher is not None:
            self.publisher.stop(PUBLISHER_STOP_TIMEOUT)
            final = self.publisher.metrics()
        if self.journal is not None:
            self.journal.close()  # after the publisher: its last deletes are committed
        if self.view is not None:
            self.view.stop()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
        self.server = self.publisher = self.capture = self.view = self.embedded_redis = None
        self.journal = self.outbox = self.reserve = None
        self.archive = self.commitment = None
        return final

    def __enter__(self) -> EdgeNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _recorded_redis_port(folder: DataFolder) -> int | None:
    record = folder.read_record()
    return record.redis_port if record is not None else None


def warn_if_exposed(config: EdgeConfig) -> None:
    """Log a loud warning when the edge listens beyond this machine with nothing to keep
    strangers out: no calling-AE allow list and no TLS."""
    if _is_loopback(config.bind) or config.calling_ae_titles or config.tls is not None:
        return
    LOGGER.warning(
        "SECURITY: the edge listens on %s:%s, beyond this machine, with no calling AE "
        "allow list ([accept] calling_ae_titles) and no TLS ([tls]): any host that reaches "
        "the port can store instances and read what this node serves",
        config.bind,
        config.port,
    )


def advertised_host(config: EdgeConfig) -> str:
    """The host routing workers reach this edge's C-GET at: ``[query_retrieve] host``, else
    the bound address, or this host's name when bound to every address (0.0.0.0, ::)."""
    if config.retrieve_host:
        return config.retrieve_host
    try:
        unspecified = ipaddress.ip_address(config.bind).is_unspecified
    except ValueError:
        unspecified = False  # a host name: it is the address
    return socket.getfqdn() if unspecified else config.bind


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it reaches the network


def build_ae(config: EdgeConfig) -> AE:
    """The edge's AE: its title, limits, allow list and accepted contexts."""
    ae = AE(config.ae_title)
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    ae.network_timeout = config.network_timeout
    ae.maximum_dataset_size = config.max_dataset_size
    ae.maximum_pdu_size = config.max_pdu_size
    ae.maximum_associations = config.max_associations
    ae.require_calling_aet = list(config.calling_ae_titles)
    ae.require_called_aet = config.require_called_aet
    syntaxes = config.accepted_transfer_syntaxes
    for sop_class in config.accepted_sop_classes:
        ae.add_supported_context(sop_class, syntaxes)
    ae.add_supported_context(Verification, syntaxes)
    if config.query_retrieve:
        # Find, Get and Move of the three models; each storage class in the role
        # a requestor proposes (a C-GET requestor takes the SCP role).
        support_query_retrieve(ae)
        ae.add_supported_context(StorageCommitmentPushModel, syntaxes)
    return ae


def server_ssl_context(config: EdgeConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    return tls.server_context(
        config.tls.cert,
        config.tls.key,
        config.tls.ca,
        require_client_cert=config.tls.require_client_cert,
    )
