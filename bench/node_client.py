"""Concurrent associations for bench/node_run.py: one process, one thread per association.

    python bench/node_client.py --port P --called-ae AE LIST [LIST ...]

Each LIST is a file naming Part 10 files, one a line: one association sends them, in
order, by path (the dataset bytes as they are on disk, as ``storescu`` sends them). Every
association is established before the clock starts, and all start sending at once, so
the figure leaves out process start-up and association set-up: 32 ``storescu`` processes
started together spread their start-ups over seconds on two CPUs, more than the sends
take. Prints one JSON line: ``{"instances": N, "seconds": S, "cpu_seconds": C}``, the time
from the start to the last C-STORE response and this process's CPU time meanwhile (on two
CPUs the client's share bounds the SCP's); releases the associations afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicombus import AE
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SUCCESS = 0x0000
TIMEOUT = 60.0  # ACSE, DIMSE and network: far above any one C-STORE here


def _send(assoc: Any, files: list[Path], start: threading.Barrier, failures: list[str]) -> None:
    start.wait(TIMEOUT)
    for number, path in enumerate(files, start=1):
        status = assoc.send_c_store(str(path), msg_id=number)
        if getattr(status, "Status", None) != SUCCESS:
            failures.append(f"C-STORE of {path.name}: status {getattr(status, 'Status', None)!r}")
            return


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--called-ae", required=True)
    parser.add_argument("lists", nargs="+", type=Path)
    args = parser.parse_args(argv)
    groups = [[Path(line) for line in path.read_text().splitlines() if line] for path in args.lists]
    ae = AE("BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.maximum_associations = len(groups)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    associations: list[Any] = []
    try:
        for _ in groups:
            assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called_ae)
            if not assoc.is_established:
                raise SystemExit(f"association {len(associations) + 1} was not accepted")
            associations.append(assoc)
        failures: list[str] = []
        start = threading.Barrier(len(groups) + 1)
        threads = [
            threading.Thread(target=_send, args=(assoc, files, start, failures))
            for assoc, files in zip(associations, groups, strict=True)
        ]
        for thread in threads:
            thread.start()
        start.wait(TIMEOUT)
        began, cpu_began = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - cpu_began
        if failures:
            raise SystemExit(failures[0])
    finally:
        for assoc in associations:
            if assoc.is_established:
                assoc.release()
    report = {"instances": sum(map(len, groups)), "seconds": seconds, "cpu_seconds": cpu_seconds}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
