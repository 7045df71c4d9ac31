"""The implementations under test: start their SCPs, drive their SCUs.

Every SCP and every SCU runs in a process of its own, so no two sides share a
GIL, for all three implementations alike. dicombus and pynetdicom run the same
code in this file (their APIs match); only the import differs. DCMTK runs its
own tools (storescp, storescu, echoscu).

This file is also the entry point of those child processes::

    python bench/peers.py serve  --impl dicombus --out DIR [--nodelay] [--profile F]
    python bench/peers.py client --impl pynetdicom --port P --task store --files LIST ...

``serve`` prints ``READY <port>`` once it listens and stops when its stdin
closes. ``client`` prints one JSON line with the timed runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
SUCCESS = 0x0000

# Generous bounds on waits that normally take milliseconds.
SCP_START_TIMEOUT = 30.0
SCP_STOP_TIMEOUT = 15.0
# The SCUs' ACSE/DIMSE/network timeouts: far above any single operation here
# (a 64 MB C-STORE takes well under a second), low enough that a lost
# response costs a run seconds, not minutes.
ASSOCIATION_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Impl:
    """One implementation in one configuration."""

    key: str
    family: str  # "dicombus" | "pynetdicom" | "dcmtk"
    nodelay: bool  # force TCP_NODELAY on (dicombus always sets it)

    @property
    def is_python(self) -> bool:
        return self.family != "dcmtk"


IMPLS = {
    impl.key: impl
    for impl in (
        Impl(key="dicombus", family="dicombus", nodelay=False),
        Impl(key="pynetdicom", family="pynetdicom", nodelay=False),
        Impl(key="pynetdicom+nodelay", family="pynetdicom", nodelay=True),
        Impl(key="dcmtk", family="dcmtk", nodelay=False),
        Impl(key="dcmtk+nodelay", family="dcmtk", nodelay=True),
    )
}


# -- DCMTK's tools ------------------------------------------------------------------------


def find_dcmtk_tool(name: str) -> str | None:
    """The DCMTK binary ``name``; pynetdicom installs console scripts of the same names
    (its "apps"), which may come first on PATH, so ask each candidate who it is."""
    folders = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    for folder in folders:
        candidate = shutil.which(name, path=folder) if folder else None
        if candidate is None:
            continue
        try:
            version = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in version.stdout:
            return str(Path(candidate).resolve())
    return None


def dcmtk_env(impl: Impl) -> dict[str, str]:
    """DCMTK reads TCP_NODELAY from the environment (dcmnet's dul.cc); unset means Nagle on."""
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if impl.nodelay:
        env["TCP_NODELAY"] = "1"
    return env


# -- SCPs, seen from the orchestrator -----------------------------------------------------


@dataclass(slots=True, kw_only=True)
class RunningScp:
    impl: Impl
    process: subprocess.Popen[str]
    port: int
    out_dir: Path
    log: TextIO

    def log_tail(self) -> str:
        return _tail(self.log)


@contextlib.contextmanager
def running_scp(
    impl: Impl,
    work_dir: Path,
    *,
    tools: dict[str, str],
    profile: Path | None = None,
    profile_clock: str = "cpu",
) -> Iterator[RunningScp]:
    """Start ``impl``'s SCP on 127.0.0.1 (writing received instances to a temp dir), yield it,
    stop it and remove what it wrote."""
    out_dir = Path(tempfile.mkdtemp(prefix=f"scp-{impl.family}-", dir=work_dir))
    # The SCP's output goes to a file: an undrained pipe would fill and stall it.
    with open(out_dir.with_suffix(".log"), "w+") as log:
        process, port = (
            _start_dcmtk_scp(impl, out_dir, log, tools["storescp"])
            if impl.family == "dcmtk"
            else _start_python_scp(impl, out_dir, log, profile, profile_clock)
        )
        try:
            yield RunningScp(impl=impl, process=process, port=port, out_dir=out_dir, log=log)
        finally:
            _stop(process, graceful=impl.is_python)
            shutil.rmtree(out_dir, ignore_errors=True)


def _start_python_scp(
    impl: Impl, out_dir: Path, log: TextIO, profile: Path | None, profile_clock: str
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "serve", "--impl", impl.family, "--out", str(out_dir)]
    if impl.nodelay:
        command.append("--nodelay")
    if profile is not None:
        command += ["--profile", str(profile), "--profile-clock", profile_clock]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )
    line = _read_line(process, SCP_START_TIMEOUT)
    if not line.startswith("READY "):
        _stop(process, graceful=False)
        raise RuntimeError(f"{impl.key} SCP did not start: {line!r} {_tail(log)}")
    return process, int(line.split()[1])


def _start_dcmtk_scp(
    impl: Impl, out_dir: Path, log: TextIO, storescp: str, options: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], int]:
    """``storescp [options] -od out_dir PORT``; ``options`` such as ``--fork``."""
    # storescp cannot listen on port 0 and report it; take a free port from
    # the OS and hand it over (the window for a clash is milliseconds).
    port = free_port()
    process = subprocess.Popen(
        [storescp, *options, "-od", str(out_dir), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        text=True,
        env=dcmtk_env(impl),
    )
    deadline = time.monotonic() + SCP_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, port
        time.sleep(0.05)  # start-up only, never on a measured path
    _stop(process, graceful=False)
    raise RuntimeError(f"storescp did not listen on port {port} within {SCP_START_TIMEOUT} s")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str], *, graceful: bool) -> None:
    """Python SCPs stop when their stdin closes (and flush a profile); DCMTK gets SIGTERM."""
    if process.poll() is None:
        if graceful and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        else:
            process.terminate()
        try:
            process.wait(SCP_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SCP_STOP_TIMEOUT)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _tail(log: TextIO) -> str:
    log.flush()
    return Path(log.name).read_text(errors="replace")[-2000:]


# -- SCUs, seen from the orchestrator -----------------------------------------------------


def python_client(
    impl: Impl, port: int, task_args: Sequence[str], timeout: float, *, script: str = __file__
) -> Any:
    """Run ``impl``'s SCU in a child process (``script client ...``); return its JSON report."""
    command = [
        sys.executable,
        script,
        "client",
        "--impl",
        impl.family,
        "--port",
        str(port),
        *task_args,
    ]
    if impl.nodelay:
        command.append("--nodelay")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        why = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{impl.key} SCU failed ({result.returncode}): {why}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def dcmtk_run(impl: Impl, command: Sequence[str], timeout: float) -> float:
    """Run one DCMTK SCU process; return its wall time (process start-up included)."""
    start = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=dcmtk_env(impl)
    )
    elapsed = time.perf_counter() - start
    failed = result.returncode != 0 or any(
        line.startswith(("E:", "F:")) for line in (result.stdout + result.stderr).splitlines()
    )
    if failed:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return elapsed


# -- child process: SCP -------------------------------------------------------------------


def _library(family: str, *, nodelay: bool) -> ModuleType:
    """dicombus or pynetdicom: the same API, so the same code below drives both."""
    # Warnings and errors to stderr (a log file for SCPs; the report for SCUs),
    # so a failed run says why. INFO and DEBUG stay off the measured path.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")
    lib: ModuleType = importlib.import_module(family)
    if family == "pynetdicom" and nodelay:
        _force_pynetdicom_nodelay(lib)
    return lib


def _force_pynetdicom_nodelay(pynetdicom: ModuleType) -> None:
    """pynetdicom has no socket-option hook. Every socket it uses for an association
    (the requestor's, created before connect, and each accepted one) passes through
    AssociationSocket.__init__, so set TCP_NODELAY right after it."""
    socket_class = pynetdicom.transport.AssociationSocket
    original = socket_class.__init__

    def init_with_nodelay(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.socket is not None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    socket_class.__init__ = init_with_nodelay


def _store_handler(event: Any, out_dir: str) -> int:
    """The same work on every Python SCP: write the instance as received, as a Part 10 file."""
    uid = event.request.AffectedSOPInstanceUID
    with open(os.path.join(out_dir, f"{uid}.dcm"), "wb") as stream:
        stream.write(event.encoded_dataset())
    return SUCCESS


def serve(args: argparse.Namespace) -> None:
    from data import CT_IMAGE_STORAGE, MULTIFRAME_WORD_SC_STORAGE

    lib = _library(args.impl, nodelay=args.nodelay)
    profiler = _ThreadProfiler(args.profile_clock) if args.profile else None
    if profiler is not None:
        profiler.install(lib)
    ae = lib.AE(ae_title="ANY-SCP")
    ae.maximum_associations = 4
    syntaxes = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    for abstract_syntax in (VERIFICATION, CT_IMAGE_STORAGE, MULTIFRAME_WORD_SC_STORAGE):
        ae.add_supported_context(abstract_syntax, syntaxes)
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(lib.evt.EVT_C_STORE, _store_handler, [args.out])],
    )
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the orchestrator closes our stdin (or dies)
    server.shutdown()
    if profiler is not None:
        profiler.dump(Path(args.profile))


class _ThreadProfiler:
    """cProfile follows one thread; dicombus serves each association in a thread of its own,
    so profile each association thread and merge them.

    With ``clock="cpu"`` the profile counts the thread's CPU time: waiting for the peer
    (blocked in recv) and being preempted by other processes are left out, so what
    remains is the work dicombus does. ``clock="wall"`` counts elapsed time.
    """

    def __init__(self, clock: str) -> None:
        import cProfile

        timer = time.thread_time if clock == "cpu" else time.perf_counter
        self._factory: Callable[[], Any] = functools.partial(cProfile.Profile, timer)
        self._profiles: list[Any] = []
        self._lock = threading.Lock()

    def install(self, lib: ModuleType) -> None:
        if lib.__name__ != "dicombus":
            raise SystemExit("--profile profiles the dicombus SCP only")
        session_class = lib.session.AssociationSession
        original: Callable[[Any], None] = session_class.run
        profiles, lock, factory = self._profiles, self._lock, self._factory

        def profiled_run(session: Any) -> None:
            profile = factory()
            profile.enable()
            try:
                original(session)
            finally:
                profile.disable()
                with lock:
                    profiles.append(profile)

        session_class.run = profiled_run

    def dump(self, path: Path) -> None:
        import pstats

        with self._lock:
            if not self._profiles:
                return
            stats = pstats.Stats(self._profiles[0])
            for profile in self._profiles[1:]:
                stats.add(profile)
        stats.dump_stats(str(path))


# -- child process: SCU -------------------------------------------------------------------


def client(args: argparse.Namespace) -> None:
    lib = _library(args.impl, nodelay=args.nodelay)
    ae = lib.AE(ae_title="BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ASSOCIATION_TIMEOUT
    if args.task == "store":
        files = [Path(line) for line in Path(args.files).read_text().splitlines() if line]
        report = _store_runs(ae, args, files)
    else:
        ae.add_requested_context(VERIFICATION, [EXPLICIT_VR_LITTLE_ENDIAN])
        run_once = _echo_associations if args.task == "echo-assoc" else _echo_one_association
        run_once(ae, args.port, args.warmup_seconds)
        report = {"runs": [run_once(ae, args.port, args.seconds) for _ in range(args.repeats)]}
    print(json.dumps(report), flush=True)


def _associate(ae: Any, port: int) -> Any:
    assoc = ae.associate("127.0.0.1", port, ae_title="ANY-SCP")
    if not assoc.is_established:
        raise SystemExit(f"association with 127.0.0.1:{port} was not accepted")
    return assoc


def _check(status: Any, what: str) -> None:
    value = getattr(status, "Status", None)
    if value != SUCCESS:
        raise SystemExit(f"{what} answered status {value!r}")


def _echo_associations(ae: Any, port: int, seconds: float) -> dict[str, float]:
    """Sequential full associations (associate + C-ECHO + release) for ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        assoc = _associate(ae, port)
        _check(assoc.send_c_echo(), "C-ECHO")
        assoc.release()
        count += 1
    return {"count": count, "seconds": time.perf_counter() - start}


def _echo_one_association(ae: Any, port: int, seconds: float) -> dict[str, float]:
    """C-ECHOs on one association for ``seconds`` (association set-up not timed)."""
    assoc = _associate(ae, port)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        _check(assoc.send_c_echo(msg_id=count % 65535 + 1), "C-ECHO")
        count += 1
    elapsed = time.perf_counter() - start
    assoc.release()
    return {"count": count, "seconds": elapsed}


def _store_runs(ae: Any, args: argparse.Namespace, files: list[Path]) -> dict[str, Any]:
    from data import CT_IMAGE_STORAGE, MULTIFRAME_WORD_SC_STORAGE

    for abstract_syntax in (CT_IMAGE_STORAGE, MULTIFRAME_WORD_SC_STORAGE):
        ae.add_requested_context(abstract_syntax, [EXPLICIT_VR_LITTLE_ENDIAN])
    sizes = [path.stat().st_size for path in files]
    _store_files(ae, args.port, files, sizes, seconds=args.seconds, limit=args.warmup_count)
    runs = [
        _store_files(ae, args.port, files, sizes, seconds=args.seconds) for _ in range(args.repeats)
    ]
    return {"runs": runs}


def _store_files(
    ae: Any,
    port: int,
    files: list[Path],
    sizes: list[int],
    *,
    seconds: float,
    limit: int | None = None,
) -> dict[str, float]:
    """One association: C-STORE the files by path, in order and round again, until
    ``seconds`` have passed (or ``limit`` were sent). Timed from the association request
    to the end of the release."""
    start = time.perf_counter()
    deadline = start + seconds
    assoc = _associate(ae, port)
    count = size = 0
    while time.perf_counter() < deadline and (limit is None or count < limit):
        index = count % len(files)
        sent = time.perf_counter()
        status = assoc.send_c_store(str(files[index]), msg_id=count % 65535 + 1)
        waited = time.perf_counter() - sent
        _check(status, f"C-STORE of {files[index].name} (after {waited:.3f} s)")
        count += 1
        size += sizes[index]
    assoc.release()
    return {"count": count, "bytes": size, "seconds": time.perf_counter() - start}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    scp = commands.add_parser("serve")
    scp.add_argument("--impl", choices=["dicombus", "pynetdicom"], required=True)
    scp.add_argument("--out", required=True)
    scp.add_argument("--nodelay", action="store_true")
    scp.add_argument("--profile")
    scp.add_argument("--profile-clock", choices=["cpu", "wall"], default="cpu")
    scu = commands.add_parser("client")
    scu.add_argument("--impl", choices=["dicombus", "pynetdicom"], required=True)
    scu.add_argument("--port", type=int, required=True)
    scu.add_argument("--nodelay", action="store_true")
    scu.add_argument("--task", choices=["echo-assoc", "echo-one", "store"], required=True)
    scu.add_argument("--seconds", type=float, default=2.0)
    scu.add_argument("--warmup-seconds", type=float, default=0.5)
    scu.add_argument("--repeats", type=int, default=3)
    scu.add_argument("--files")
    scu.add_argument("--warmup-count", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    args = _parse(argv)
    if args.command == "serve":
        serve(args)
    else:
        client(args)


if __name__ == "__main__":
    main(sys.argv[1:])
