"""Running the server: uvicorn for HTTP and grpcio's asyncio server for gRPC, in one event
loop per worker process, with the signals an operator sends.

* ``SIGHUP``: every policy file is loaded again now (a file that fails keeps the last good
  policy and logs the error with its file:line:col); requests in flight finish with the
  policy they started with.
* ``SIGTERM`` or ``SIGINT``: drain: ``/readyz`` answers 503 at once, and requests are still
  answered for ``drain_delay`` seconds (the time a load balancer takes to see the 503 and
  send no more; a second signal ends the wait); then both listeners stop accepting together,
  requests in flight are answered (up to ``drain`` seconds), and the process exits 0.
  A SIGHUP while a process starts is ignored (its policies are being loaded anyway), never
  fatal.
* ``workers`` > 1: that many processes, each with its own policies, listening on the same
  addresses (``SO_REUSEPORT``: the kernel spreads connections); the parent forwards the
  signals and restarts a worker that dies (waiting longer each time one dies soon after it
  started, up to 30 seconds); a worker whose parent is gone drains and exits. Their
  decision lines share stdout under one lock, so a long line (``--log-trace``) is never
  cut by another worker's. Every worker loads the policies before it
  listens, and the parent loads them first, so a policy that does not load stops
  ``serve`` before anything listens; the parent binds each address once too, so that a
  taken one stops it rather than workers that die at start and are started again.

Decision logs go to the ``policyengine.decisions`` logger; ``policyengine serve`` writes
them to stdout as JSON lines (:class:`JsonLines`: one object per decision, the
``DecisionLog`` fields) and the server's own messages to stderr.

Owns: ServeOptions, serve, JsonLines, Lines. uvicorn is imported here alone (the ``server``
extra); grpcio in ``server/grpc.py``, prometheus-client in ``server/metrics.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from policyengine.integrations.runtime import DecisionLog

__all__ = ["JsonLines", "Lines", "ServeOptions", "serve"]

_log = logging.getLogger("policyengine.server")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``policyengine serve`` was asked for. An address is ``(host, port)``."""

    policies: tuple[str, ...]
    http: tuple[str, int] | None = ("127.0.0.1", 9000)
    grpc: tuple[str, int] | None = None
    workers: int = 1
    interval: float = 1.0
    """Seconds between two looks at the policy files."""
    drain: float = 10.0
    """Seconds a draining server waits for requests in flight."""
    drain_delay: float = 0.0
    """Seconds a draining server keeps answering, ``/readyz`` 503, before it stops accepting."""
    metrics: bool = True
    log_fields: tuple[str, ...] = field(default_factory=tuple)
    """The decision log's certificate fields (empty: DecisionLog's default)."""
    log_trace: bool = False
    decision_log: bool = True
    """One record per decision on the ``policyengine.decisions`` logger."""
    setup: Callable[[], None] | None = None
    """Run first in every worker process: the CLI sends the decision log to stdout there
    (a module-level function, so that a spawned worker can be handed it)."""


_lines_lock: Any = None
"""The lock the workers of one ``serve`` share to write whole lines (None: one process)."""


class Lines(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose line, however long, is written whole while several worker
    processes share the stream (a pipe takes at most 4 KiB in one piece)."""

    def emit(self, record: logging.LogRecord) -> None:
        if _lines_lock is None:
            super().emit(record)
            return
        with _lines_lock:
            super().emit(record)


class JsonLines(logging.Formatter):
    """A decision record as one JSON object: the time, the summary, and the fields the
    :class:`~policyengine.integrations.runtime.DecisionLog` put on the record."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "policyengine", None)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "message": record.getMessage(),
        }
        if isinstance(fields, dict):
            out.update(fields)
        return _JSON.encode(out)


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
"""One encoder for every line (``json.dumps`` with options makes one a call)."""


def _bound(address: tuple[str, int], *, shared: bool = True) -> socket.socket:
    """A TCP socket bound to ``address`` that other workers may bind too (``shared``); an
    OSError that names the address when it cannot be. Unshared, the bind fails while any
    process listens there, another ``serve`` sharing its port among its workers too."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {_netloc(address)}: {exc.strerror or exc}") from None
    return sock


def _listening(address: tuple[str, int]) -> socket.socket:
    """A TCP socket listening on ``address`` that other workers may listen on too."""
    sock = _bound(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _netloc(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _authorizer(options: ServeOptions, metrics: Any) -> Any:
    from policyengine.server.authorizer import Authorizer

    fields = {"fields": options.log_fields} if options.log_fields else {}
    log = DecisionLog(trace=options.log_trace, **fields) if options.decision_log else None  # type: ignore[arg-type]
    return Authorizer(
        options.policies,
        interval=options.interval,
        log=log,
        observe=metrics.observe if metrics is not None else None,
    )


def _http_server(
    options: ServeOptions, authorizer: Any, metrics: Any, draining: asyncio.Event
) -> uvicorn.Server:
    from policyengine.server.http import AuthorizerApp

    app = AuthorizerApp(
        authorizer,
        ready=lambda: not draining.is_set(),
        metrics=(lambda: metrics.render(authorizer)) if metrics is not None else None,
    )
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        # The peer is the connection's: uvicorn would otherwise take it from a client's
        # X-Forwarded-For when the connection comes from loopback, and the policy's
        # trusted_proxies would trust whoever said so.
        proxy_headers=False,
        forwarded_allow_ips="",
        timeout_graceful_shutdown=max(1, int(options.drain)),
    )
    return _QuietServer(config)


async def _serve_worker(options: ServeOptions, parent: int | None) -> None:
    metrics = None
    if options.metrics:
        from policyengine.server.metrics import Metrics

        metrics = Metrics()
    authorizer = _authorizer(options, metrics)
    if metrics is not None:
        metrics.track(authorizer)
    draining = asyncio.Event()
    http_server = None
    serving: list[asyncio.Future[None]] = []
    if options.http is not None:
        http_server = _http_server(options, authorizer, metrics, draining)
        sockets = [_listening(options.http)]
        serving.append(asyncio.ensure_future(http_server.serve(sockets=sockets)))
    grpc_server = None
    if options.grpc is not None:
        from policyengine.server.grpc import grpc_server as make_grpc

        grpc_server = make_grpc(authorizer, _netloc(options.grpc))
        await grpc_server.start()
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(authorizer, metrics))
    watching = asyncio.ensure_future(_watch_policies(authorizer, metrics, options.interval))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: (hurry if stop.is_set() else stop).set())
    orphaned = None
    if parent is not None:
        orphaned = asyncio.ensure_future(_watch_parent(parent, stop))
    shown = [
        f"HTTP {_netloc(options.http)}" if options.http else "",
        f"gRPC {_netloc(options.grpc)}" if options.grpc else "",
    ]
    _log.info(
        "worker %d serving %s on %s",
        os.getpid(),
        ", ".join(authorizer.names),
        " and ".join(part for part in shown if part),
    )
    await stop.wait()
    draining.set()
    _log.info("worker %d draining", os.getpid())
    watching.cancel()
    if orphaned is not None:
        orphaned.cancel()
    if options.drain_delay > 0:  # /readyz says 503 while the proxies stop sending
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(hurry.wait(), options.drain_delay)
    stopping = []
    if grpc_server is not None:
        stopping.append(grpc_server.stop(options.drain))
    if http_server is not None:
        http_server.should_exit = True
        stopping.extend(serving)
    await asyncio.gather(*stopping)


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Drain once the supervising process is gone (killed with SIGKILL: it forwarded no
    SIGTERM), rather than serve on, unsupervised, with nobody to stop it."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    _log.error("worker %d: the supervising process %d is gone; stopping", os.getpid(), parent)
    stop.set()


def _reload(authorizer: Any, metrics: Any) -> None:
    loaded = authorizer.reload()
    if metrics is not None:
        metrics.track(authorizer)
    _log.info("SIGHUP: policies reloaded%s", "" if loaded else " (some failed; see above)")


async def _watch_policies(authorizer: Any, metrics: Any, interval: float) -> None:
    """Look at the policy files every ``interval`` seconds, requests or none, and set the
    worker's reload-failure gauges: a worker that gets no requests is as current as one
    that does, and its gauges say so in ``/metrics``."""
    while True:
        await asyncio.sleep(interval)
        try:
            for provider in authorizer.providers.values():
                provider.current()
            if metrics is not None:
                metrics.track(authorizer)
        except Exception:  # a look that fails is logged; the next one comes
            _log.exception("the policy files could not be looked at")


class _QuietServer(uvicorn.Server):
    """uvicorn's Server without its own signal handlers: the worker owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _worker_main(options: ServeOptions, parent: int | None = None, lock: Any = None) -> None:
    global _lines_lock
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop handles it: never fatal
    _lines_lock = lock
    if options.setup is not None:
        options.setup()
    try:  # uvloop (the server extra, on Linux and macOS) runs both servers' loop faster
        import uvloop
    except ImportError:
        asyncio.run(_serve_worker(options, parent))
    else:
        uvloop.run(_serve_worker(options, parent))


def serve(options: ServeOptions) -> int:
    """Run the server until SIGTERM; the exit status. A policy that does not load raises
    :class:`~policyengine.errors.PolicyError` before anything listens."""
    from policyengine.server.authorizer import Authorizer

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload while starting is not fatal
    Authorizer(options.policies)  # every policy loads, or this raises before listening
    for address in (options.http, options.grpc):
        if address is not None:  # taken: said here, not by workers dying in a loop
            _bound(address, shared=False).close()
    if options.workers <= 1:
        _worker_main(options)
        return 0
    with tempfile.TemporaryDirectory(prefix="policyengine-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        return _supervise(options)


_BACKOFF = (0.5, 30.0)
"""Seconds before a worker that died soon after it started is started again: the first,
doubled each time, at most the second."""
_STEADY = 10.0
"""A worker that ran this long before it died is started again at once."""


def _supervise(options: ServeOptions) -> int:
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()

    def start() -> Any:
        return _start(context, options, lock)

    workers = [start() for _ in range(options.workers)]
    started = [time.monotonic()] * len(workers)
    failures = [0] * len(workers)
    due: list[float | None] = [None] * len(workers)
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, sig)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while True:
        for index, worker in enumerate(workers):
            worker.join(timeout=0.2)
            if worker.is_alive() or stopping:
                continue
            now = time.monotonic()
            if due[index] is None:
                if options.metrics and worker.pid is not None:
                    from policyengine.server.metrics import Metrics

                    Metrics.forget(worker.pid)
                soon = now - started[index] < _STEADY
                failures[index] = failures[index] + 1 if soon else 0
                wait = min(_BACKOFF[1], _BACKOFF[0] * 2 ** (failures[index] - 1)) if soon else 0
                _log.error(
                    "worker %s exited (%s); starting another%s",
                    worker.pid,
                    worker.exitcode,
                    f" in {wait:g} s" if wait else "",
                )
                due[index] = now + wait
            if now >= (due[index] or 0):
                workers[index], started[index], due[index] = start(), now, None
        if stopping and not any(worker.is_alive() for worker in workers):
            return 0


def _start(context: Any, options: ServeOptions, lock: Any) -> Any:
    process = context.Process(target=_worker_main, args=(options, os.getpid(), lock), daemon=False)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited: the new process
    try:  # ignores SIGHUP from its first instruction until its loop handles it
        process.start()
    finally:
        signal.signal(signal.SIGHUP, previous)
    return process
