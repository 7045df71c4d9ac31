"""``dicombus qrscp``: a Query/Retrieve SCP over a folder of DICOM files (DCMTK's dcmqrscp).

At start the folder is indexed into SQLite (only new and changed files are
read: see :class:`dicombus.qr.index.Index`); then the server answers
C-FIND, C-GET and C-MOVE in the Patient Root, Study Root and Patient/Study
Only models, C-ECHO, and C-STORE: an instance it receives is written durably
under the folder, as ``dicombus storescp`` writes it, and indexed before the
Success response, so the next query finds it.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from dicombus import evt
from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_listen_options,
    add_network_options,
    configure_logging,
    error,
)
from dicombus.cli.storescp import add_layout_option, storage_ae
from dicombus.qr.archive import IndexedStorage
from dicombus.qr.index import Level
from dicombus.qr.scp import (
    ConfigError,
    Destination,
    QueryRetrieveSCP,
    load_destinations,
    support_query_retrieve,
)
from dicombus.storage_files import StorageRootError, prepare_storage_root

COMMAND = "qrscp"
# Inside the storage folder, hidden so that indexing skips it (and its -wal / -shm files).
DEFAULT_INDEX_NAME = ".dicombus-index.sqlite"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="serve a folder of DICOM files with C-FIND, C-GET and C-MOVE",
        description="A Query/Retrieve SCP (Patient Root, Study Root, Patient/Study Only: Find, "
        "Get, Move), Storage SCP and Verification SCP over the DICOM files under --storage. "
        "Runs until SIGINT (Ctrl-C) or SIGTERM.",
    )
    add_listen_options(parser)
    parser.add_argument(
        "--storage",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder of DICOM files to serve; received instances are stored here too",
    )
    parser.add_argument(
        "--index",
        type=Path,
        metavar="FILE",
        help=f"the SQLite index (default DIR/{DEFAULT_INDEX_NAME}; kept between runs)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file naming the C-MOVE destinations: "
        '[destinations] TITLE = {host = "...", port = N}',
    )
    add_network_options(parser, default_aet="QRSCP")
    add_layout_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    configure_logging(args, quiet_by_default=False)
    destinations: dict[str, Destination] = {}
    if args.config is not None:
        try:
            destinations = load_destinations(args.config)
        except ConfigError as exc:
            error(COMMAND, str(exc))
            return ExitCode.USAGE
    root: Path = args.storage
    try:
        # As storescp and the edge: a root that cannot take instances fails now,
        # not at the first C-STORE, and what a killed run left half-written goes.
        incoming = prepare_storage_root(root, "--storage")
    except StorageRootError as exc:
        error(COMMAND, str(exc))
        return ExitCode.LOCAL_ERROR
    try:
        storage = IndexedStorage(root, args.index or root / DEFAULT_INDEX_NAME, layout=args.layout)
    except (OSError, sqlite3.Error) as exc:
        error(COMMAND, f"cannot open the index of the storage folder: {exc}")
        return ExitCode.LOCAL_ERROR
    index = storage.index
    with storage:
        report = storage.open()
        scp = QueryRetrieveSCP(index, ae_title=args.aet, destinations=destinations)
        handlers = [(evt.EVT_C_STORE, storage.handle_store), *scp.handlers()]
        ae = storage_ae(args)
        # Spooled datasets in the root's .incoming folder, swept at the next start.
        ae.spool_directory = incoming
        support_query_retrieve(ae)
        with StopSignals() as signals:
            try:
                server = ae.start_server((args.bind, args.port), block=False, evt_handlers=handlers)
            except OSError as exc:
                error(COMMAND, f"cannot listen on {args.bind}:{args.port}: {exc}")
                return ExitCode.LOCAL_ERROR
            host, port = server.server_address[:2]
            print(
                f"dicombus {COMMAND}: {ae.ae_title} listening on {host}:{port}, serving "
                f"{index.count(Level.IMAGE)} instances ({report.indexed} newly indexed) "
                f"from {root.resolve()}",
                flush=True,
            )
            received = signals.wait()
            server.shutdown()
    print(f"dicombus {COMMAND}: {received} received, stopped", flush=True)
    return ExitCode.OK
