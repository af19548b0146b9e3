"""Audit a certificate inventory against one policy: ``policyengine eval``.

A deployment about to switch a policy on wants to know, before any client calls, which of
the certificates it has issued (or collected from partners) the policy lets through, which
it refuses and why, and which will expire soon. :func:`audit` answers that for every
certificate file under some paths, one :class:`AuditResult` per certificate.

Why it is shaped this way:

* It streams. Inventories run to tens of thousands of files; results are yielded as each
  file is read (or each run of :data:`_CHUNK` files) and nothing is kept, so memory stays
  flat and the first lines appear at once. Only the list of file names is gathered first,
  for the progress bar's total.
* It goes as fast as parsing allows: one compiled :class:`Policy` is reused, each
  certificate is parsed once with :func:`read_certificate` and handed to
  :meth:`Policy.evaluate` as facts (no facts cache to fill, no explain trace to build);
  and a large inventory is shared out among worker processes (``jobs``), chunk by chunk,
  the results coming back in file order. For a report, :func:`audit_report` has the
  workers write the lines and count the decisions too: what comes back is one string and
  four numbers per chunk, so the parent process is never the bottleneck.
* A file that cannot be opened or parsed is a result (``unreadable``), never an abort: an
  audit that stops at the first stray file in a folder of 20,000 answers nothing.
* Files are examined without blocking: a FIFO or device found in the tree is reported,
  never opened (opening a FIFO for reading waits for a writer forever).

Owns the audit of a certificate inventory (``policyengine eval``). May import ``load/``,
``evaluation/``, ``request/``; must not import ``integrations/`` or ``cli/``, and prints
nothing (the CLI renders the report it returns).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from policyengine.errors import CertificateError, FactError
from policyengine.evaluation.decision import MALFORMED_CERTIFICATE
from policyengine.evaluation.engine import Policy
from policyengine.request.certificate import read_certificate
from policyengine.request.der import pem_certificate_blocks
from policyengine.values import format_time

__all__ = [
    "CERTIFICATE_SUFFIXES",
    "MAX_FILE_BYTES",
    "UNREADABLE",
    "AuditResult",
    "Report",
    "audit",
    "audit_report",
    "find_certificate_files",
]

ALLOW, DENY = "allow", "deny"
UNREADABLE = "unreadable"
"""Decision and reason of a file that could not be opened or read (the OS error says why)."""

CERTIFICATE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".cert", ".der"})
"""The names examined inside a directory. Folders of certificates also hold keys, CRLs
and scripts; reporting each as a malformed certificate would bury the real findings. A
file named on the command line is examined whatever its name."""

MAX_FILE_BYTES = 16 * 1024 * 1024
"""A bigger file is reported, not read: no certificate bundle is that large."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class AuditResult:
    """The verdict on one certificate (or on one file that yielded none).

    ``decision`` is ``allow``, ``deny`` or ``unreadable``; ``reason`` the engine's reason
    code, or ``malformed_certificate`` / ``unreadable`` for a file that gave no
    certificate. ``file_number`` counts files (1-based), so a caller can show progress
    in files while a bundle yields several results.
    """

    file: str
    file_number: int
    decision: str
    reason: str
    message: str
    rule: str | None = None
    not_after: str | None = None
    subject: str | None = None
    sha256: str | None = None
    expiring: bool = False
    """It is still valid at the audit time and expires within the window."""
    expired: bool = False
    """It expired before the audit time."""

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "decision": self.decision,
            "rule": self.rule,
            "reason": self.reason,
            "message": self.message,
            "expiring": self.expiring,
            "expired": self.expired,
            "not_after": self.not_after,
            "subject": self.subject,
            "sha256": self.sha256,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON, exactly as ``json.dumps(..., ensure_ascii=False)``
        writes it, built directly from the fields (a third of the cost: the types are known)."""
        return (
            f'{{"file": {_quote(self.file)}, "decision": {_quote(self.decision)}, '
            f'"rule": {_json_text(self.rule)}, "reason": {_quote(self.reason)}, '
            f'"message": {_quote(self.message)}, "expiring": {_JSON_BOOL[self.expiring]}, '
            f'"expired": {_JSON_BOOL[self.expired]}, "not_after": {_json_text(self.not_after)}, '
            f'"subject": {_json_text(self.subject)}, "sha256": {_json_text(self.sha256)}}}'
        )


_quote: Callable[[str], str] = json.encoder.encode_basestring
_JSON_BOOL = {False: "false", True: "true"}


def _json_text(text: str | None) -> str:
    return "null" if text is None else _quote(text)


def find_certificate_files(paths: Iterable[str]) -> Iterator[str]:
    """Every file to examine, in a stable order: the paths given, directories walked.

    Inside directories only :data:`CERTIFICATE_SUFFIXES` are taken (and hidden entries
    skipped); symbolic links to directories are followed once (a loop is not re-entered).
    A path given that does not exist is still yielded, so it is reported as unreadable.
    """
    seen: set[tuple[int, int]] = set()
    for path in paths:
        if os.path.isdir(path):
            yield from _walk(path, seen)
        else:
            yield path


def _walk(directory: str, seen: set[tuple[int, int]]) -> Iterator[str]:
    try:
        info = os.stat(directory)
    except OSError:
        return
    if (info.st_dev, info.st_ino) in seen:
        return
    seen.add((info.st_dev, info.st_ino))
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        yield directory  # reported as unreadable with the OS error
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks; a broken one is not a directory
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(entry.path, seen)
        elif os.path.splitext(entry.name)[1].lower() in CERTIFICATE_SUFFIXES:
            yield entry.path


def audit(
    policy: Policy,
    files: Iterable[str],
    *,
    at: datetime,
    window: timedelta,
    path: str = "/",
    method: str = "GET",
    host: str | None = None,
    jobs: int = 1,
) -> Iterator[AuditResult]:
    """Decide every certificate in ``files`` as a request to ``path`` at time ``at``.

    One result per certificate, in file order; a file holding several PEM certificates
    yields one per certificate, its name suffixed ``#1``, ``#2``, …; a file that yields
    none gives one ``unreadable`` result. Never raises for a bad file.

    ``jobs``: worker processes to decide in, where the platform can fork (the results and
    their order are the same); a run of a few hundred files stays in this process.
    """
    request: dict[str, Any] = {
        "at": at,
        "window": window,
        "path": path,
        "method": method,
        "host": host,
    }
    if jobs <= 1:  # result by result, as each file is read
        yield from _audit_files(policy, enumerate(files, 1), **request)
        return
    for batch in _batches(policy, files, jobs, _keep, request):
        yield from batch


@dataclass(frozen=True, slots=True)
class Report:
    """What :func:`audit_report` gives for a run of files: their results, written."""

    text: str
    """Every result's line, in file order."""
    files: int
    """The number of the last file in the run (1-based): progress, in files."""
    allowed: int
    denied: int
    unreadable: int
    expiring: int


def audit_report(
    policy: Policy,
    files: Iterable[str],
    render: Callable[[AuditResult], str],
    *,
    jobs: int = 1,
    **request: Any,
) -> Iterator[Report]:
    """:func:`audit` (``request``: its keyword arguments), each result written by ``render``
    where it was decided, one :class:`Report` per run of files.

    For a report of a large inventory (``policyengine eval``): the worker processes write
    the lines and count the decisions, and only the text and the counts come back, so the
    process that gathers them does little more than print.
    """
    request = {"path": "/", "method": "GET", "host": None, **request}
    yield from _batches(policy, files, jobs, functools.partial(_report, render), request)


_CHUNK = 512
"""Files a worker process takes at a time: enough that handing them over costs little,
few enough that results stream."""

_WORKER: list[tuple[Policy, Callable[[Iterable[AuditResult]], Any], dict[str, Any]]] = []
"""What a forked worker process decides with and how it hands the results back (inherited
from its parent: the compiled policy holds closures, which cannot be pickled)."""


def _keep(results: Iterable[AuditResult]) -> list[AuditResult]:
    return list(results)


def _report(render: Callable[[AuditResult], str], results: Iterable[AuditResult]) -> Report:
    lines = []
    counts = {ALLOW: 0, DENY: 0, UNREADABLE: 0}
    expiring = last = 0
    for result in results:
        lines.append(render(result))
        counts[result.decision] += 1
        expiring += result.expiring
        last = result.file_number
    return Report("".join(lines), last, counts[ALLOW], counts[DENY], counts[UNREADABLE], expiring)


def _batches(
    policy: Policy,
    files: Iterable[str],
    jobs: int,
    gather: Callable[[Iterable[AuditResult]], _T],
    request: dict[str, Any],
) -> Iterator[_T]:
    """``gather`` over the results of each run of :data:`_CHUNK` files, in file order.

    With ``jobs`` over 1, more than one chunk of files and a platform that can fork, each
    chunk is gathered in one of ``jobs`` forked worker processes.
    """
    names = list(files)
    chunks = [
        list(enumerate(names[start : start + _CHUNK], start + 1))
        for start in range(0, len(names), _CHUNK)
    ]
    if jobs <= 1 or len(chunks) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for chunk in chunks:
            yield gather(_audit_files(policy, chunk, **request))
        return
    _WORKER[:] = [(policy, gather, request)]
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from pool.imap(_gather_chunk, chunks)
    finally:
        _WORKER.clear()


def _gather_chunk(chunk: list[tuple[int, str]]) -> Any:
    policy, gather, request = _WORKER[0]
    return gather(_audit_files(policy, chunk, **request))


def _audit_files(
    policy: Policy,
    numbered: Iterable[tuple[int, str]],
    at: datetime,
    window: timedelta,
    path: str,
    method: str,
    host: str | None,
) -> Iterator[AuditResult]:
    horizon = at + window
    for number, name in numbered:
        try:
            data = _read(name)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            yield AuditResult(name, number, UNREADABLE, UNREADABLE, f"cannot read {name}: {detail}")
            continue
        blocks = pem_certificate_blocks(data)
        if blocks is None:
            yield _decide(policy, name, number, data, at, horizon, path, method, host)
        elif not blocks:
            message = "no -----BEGIN CERTIFICATE----- block in the PEM file"
            yield AuditResult(name, number, UNREADABLE, MALFORMED_CERTIFICATE, message)
        elif len(blocks) == 1:
            yield _decide(policy, name, number, blocks[0], at, horizon, path, method, host)
        else:
            for index, block in enumerate(blocks, 1):
                label = f"{name}#{index}"
                yield _decide(policy, label, number, block, at, horizon, path, method, host)


def _read(name: str) -> bytes:
    """The file's bytes, refusing what is not a regular file before reading it.

    Opened non-blocking, so a FIFO is seen for what it is instead of waiting for a writer;
    the type and size come from the open descriptor (one ``fstat``, no race with a rename).
    """
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            if stat.S_ISFIFO(info.st_mode):
                kind = "a FIFO, not a regular file"
            raise OSError(0, kind)
        if info.st_size > MAX_FILE_BYTES:
            raise OSError(0, f"{info.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit")
        first = os.read(fd, max(info.st_size, 65536))
        if 0 < len(first) == info.st_size:
            return first  # the whole file, as fstat measured it: no second read for EOF
        chunks = [first]
        while chunk := os.read(fd, max(info.st_size, 65536)):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_FILE_BYTES:
                raise OSError(0, f"over the {MAX_FILE_BYTES}-byte limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _decide(
    policy: Policy,
    name: str,
    number: int,
    data: bytes,
    at: datetime,
    horizon: datetime,
    path: str,
    method: str,
    host: str | None,
) -> AuditResult:
    try:
        facts = read_certificate(data)
    except CertificateError as exc:
        return AuditResult(name, number, UNREADABLE, MALFORMED_CERTIFICATE, str(exc))
    decision = policy.evaluate(facts, path=path, method=method, host=host, now=at)
    not_after = _fact(lambda: facts.not_after)
    return AuditResult(
        file=name,
        file_number=number,
        decision=ALLOW if decision.allowed else DENY,
        reason=decision.reason,
        message=decision.message,
        rule=decision.rule,
        not_after=format_time(not_after) if not_after is not None else None,
        subject=_fact(lambda: facts.subject),
        sha256=facts.sha256,
        expiring=not_after is not None and at <= not_after <= horizon,
        expired=not_after is not None and at >= not_after + timedelta(seconds=1),
    )


def _fact(read: Callable[[], _T]) -> _T | None:
    """One fact, or None when the certificate's encoding of it cannot be read."""
    try:
        return read()
    except FactError:
        return None
