"""Running a policy in an application: reloading it when its file changes, and logging every
decision as one structured record.

The integrations (``policyengine.integrations``) use both; an application that calls
``Policy.evaluate_request`` itself can too. It imports the loader and the evaluation stage,
no web framework, and nothing of ``cli/`` or ``tooling/``; it writes only through
``logging``.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from policyengine.errors import PolicyError
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.load.loader import load_policy

__all__ = [
    "DECISION_LOGGER",
    "DEFAULT_LOG",
    "DEFAULT_LOG_FIELDS",
    "LOG_FIELDS",
    "DecisionLog",
    "LogOption",
    "ReloadingPolicy",
    "as_policy_provider",
    "decision_log",
]

DECISION_LOGGER = "policyengine.decisions"
DEFAULT_LOG_FIELDS = ("fingerprint_sha256", "subject")
"""Certificate fields a decision record carries unless told otherwise."""
_CERTIFICATE_FIELDS = ("fingerprint_sha256", "fingerprint_sha1", "subject", "issuer", "serial")
_IDENTITY_FIELDS = ("principal", "groups", "roles")
"""Log fields from the decision's identity (``groups`` and ``roles`` as lists)."""
LOG_FIELDS = (*_CERTIFICATE_FIELDS, *_IDENTITY_FIELDS)
"""Every field a DecisionLog can add to its records (``fields=``, Django's LOG_FIELDS)."""

_log = logging.getLogger("policyengine")


_Stamp = tuple[Any, ...] | None
"""What a check sees of one watched path: None when it cannot be read."""
_Snapshot = tuple[tuple[str, _Stamp], ...]


def _stamp(path: Path) -> _Stamp:
    """A file's identity, size and times; for a folder (anchors may be one) its own and
    those of the files in it. Any write, truncation, rename over it or touch shows."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    own = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if not os.path.isdir(path):
        return own
    try:
        names = sorted(entry.name for entry in os.scandir(path) if entry.is_file())
    except OSError:
        return None
    return (*own, tuple((name, _stamp(path / name)) for name in names))


def _watched(path: Path, policy: Policy | None) -> tuple[Path, ...]:
    """The policy file, then every anchor, intermediate and CRL file the policy reads."""
    if policy is None or policy.trust is None:
        return (path,)
    settings = policy.trust.settings
    return (path, *settings.anchors, *settings.intermediates, *settings.crls)


def _snapshot(paths: Iterable[Path]) -> _Snapshot:
    return tuple((str(path), _stamp(path)) for path in paths)


class ReloadingPolicy:
    """A policy file kept up to date: an edited file is picked up without a restart.

    At most once every ``interval`` seconds a request looks at the policy file and at every
    anchor, intermediate and CRL file it names (their identity, size and modification
    time). A change is loaded only once the files have stopped changing: when two checks
    in a row see the same changed state. So an editor or ``cp`` writing the file in place
    is not caught mid-write, when a valid prefix of the file could lack a later deny rule;
    and a file that changed while it was being loaded is not used, but loaded again once
    it settles. The safe way to change a policy is still to write a new file and rename it
    over the old one (``mv``, ``os.replace``): a rename is atomic, so every check sees
    either the old file or the new one.

    The new policy replaces the old one in a single reference swap, so a request in flight
    keeps the policy it started with. A file that fails to load leaves the previous policy
    in force, and the error is logged with its file:line:col; the same broken files are
    not retried until they change again. A missing policy file is waited for, the
    previous policy staying in force. The first load must succeed:
    :class:`~policyengine.errors.PolicyError` is raised from the constructor.

    ``accept``: asked of every policy a reload loads, before it replaces the one in force;
    the PolicyError it returns makes the reload fail as a file that does not load would
    (``policyengine serve`` refuses a policy renamed under its route this way).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        interval: float = 1.0,
        accept: Callable[[Policy], PolicyError | None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.accept = accept
        before = _snapshot((self.path,))
        self._policy = load_policy(self.path)
        self._watch = _watched(self.path, self._policy)
        # the policy file as it was before it was read: if it changed while being read,
        # the first check sees a change, and loads it again once it settles
        self._loaded: _Snapshot = before + _snapshot(self._watch[1:])
        self._pending: _Snapshot | None = None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.reloads = 0
        """How many times changed files were loaded successfully."""
        self.last_error: PolicyError | None = None
        """The error of the last failed reload, or None."""

    @property
    def watched(self) -> tuple[Path, ...]:
        """The files a check looks at: the policy file, then the trust files it names."""
        return self._watch

    def unchanged(self) -> bool:
        """True when the files are as they were when the policy in force was loaded."""
        return self.last_error is None and _snapshot(self._watch) == self._loaded

    def current(self) -> Policy:
        """The policy to decide this request with."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return self._policy
        if not self._lock.acquire(blocking=False):
            return self._policy  # another thread is checking right now
        try:
            self._checked = now
            self._check()
        finally:
            self._lock.release()
        return self._policy

    def reload(self) -> bool:
        """Load the files now, changed or not, without waiting for them to settle (what
        ``policyengine serve`` does on SIGHUP: the operator says they are written). A file
        that fails to load leaves the previous policy in force, as a timed check does.
        True when the files loaded."""
        with self._lock:
            self._checked = time.monotonic()
            self._reload(_snapshot(self._watch))
        return self.last_error is None

    def _check(self) -> None:
        seen = _snapshot(self._watch)
        if seen == self._loaded or seen[0][1] is None:  # unchanged, or no policy file
            self._pending = None
            return
        if seen != self._pending:
            self._pending = seen  # changed since the last check: wait until it settles
            _log.debug("policy %s: files changed; loaded once they stop changing", self.path)
            return
        self._reload(seen)

    def _reload(self, seen: _Snapshot) -> None:
        self._pending = None
        try:
            policy = load_policy(self.path)
            refused = self.accept(policy) if self.accept is not None else None
            if refused is not None:
                raise refused
        except PolicyError as exc:
            self._loaded = seen  # do not retry the same broken files on every request
            self.last_error = exc
            _log.error(
                "policy %s not reloaded; the previous one stays in force:\n%s", self.path, exc
            )
            return
        watch = _watched(self.path, policy)
        after = _snapshot(watch)
        known = dict(seen)
        if any(path in known and known[path] != stamp for path, stamp in after):
            # written to while being loaded: what was read may be half of it
            _log.debug("policy %s: files changed while loading; loaded once settled", self.path)
            return
        self._policy = policy
        self._watch = watch
        self._loaded = after
        self.last_error = None
        self.reloads += 1
        _log.info("policy %s reloaded (%d rules)", self.path, len(policy.rules))


_shared: weakref.WeakValueDictionary[str, ReloadingPolicy] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def as_policy_provider(policy: Policy | ReloadingPolicy | str | Path) -> ReloadingPolicy | Policy:
    """A Policy or ReloadingPolicy as given, or a ReloadingPolicy for a file path.

    The same file path given in several places of one process (a middleware and a
    decorator, Django's settings read twice) gets the same ReloadingPolicy, as long as the
    file has not changed since it loaded: then both decide with the same policy object,
    and a decision one of them made can be reused by the other. A changed file is loaded
    afresh (a broken one raises PolicyError), exactly as the first time.
    """
    if isinstance(policy, (Policy, ReloadingPolicy)):
        return policy
    if isinstance(policy, (str, Path)):
        key = os.path.abspath(policy)  # not resolve(): a symlink may be swapped later
        with _shared_lock:
            existing = _shared.get(key)
            if existing is not None and existing.unchanged():
                return existing
            made = ReloadingPolicy(policy)
            _shared[key] = made
            return made
    raise TypeError(f"expected a Policy, a ReloadingPolicy or a policy file path, not {policy!r}")


def current_policy(provider: Policy | ReloadingPolicy) -> Policy:
    return provider.current() if isinstance(provider, ReloadingPolicy) else provider


@dataclass(frozen=True, slots=True)
class DecisionLog:
    """Writes one record per decision on the ``policyengine.decisions`` logger.

    The record's message is a one-line summary; its ``extra`` fields (``decision``,
    ``reason``, ``rule``, ``policy``, ``explanation`` (the decision's own message, which a
    refusal does not tell the client), ``method``, ``path``, ``peer``, ``elapsed_us``, the
    ``fields`` (by default the certificate's SHA-256 fingerprint and subject; any of
    :data:`LOG_FIELDS`, the identity's ``principal``, ``groups`` and ``roles`` among them),
    and ``trace`` when the decision was explained) are attributes of the LogRecord, ready
    for a JSON log handler. ``trace=True`` has the integrations explain every decision, so
    that every record carries its trace: it costs time on every request.
    """

    fields: tuple[str, ...] = DEFAULT_LOG_FIELDS
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(DECISION_LOGGER))
    trace: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(LOG_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown log fields {sorted(unknown)}; choose from {', '.join(LOG_FIELDS)}"
            )

    def record(
        self,
        decision: Decision,
        *,
        method: str | None,
        path: str | None,
        peer: str | None,
        elapsed_us: float,
    ) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        extra: dict[str, Any] = {
            "decision": decision.effect,
            "reason": decision.reason,
            "rule": decision.rule,
            "policy": decision.policy,
            "explanation": decision.message,
            "method": method,
            "path": path,
            "peer": peer,
            "elapsed_us": round(elapsed_us, 1),
        }
        extra.update(_certificate_fields(decision, self.fields))
        if decision.trace is not None:
            extra["trace"] = decision.trace.to_dict()
        self.logger.info(
            "%s %s %s -> %s (%s%s)",
            peer or "-",
            method or "-",
            path or "-",
            decision.effect,
            decision.reason,
            f", rule {decision.rule}" if decision.rule else "",
            extra={"policyengine": extra, **extra},
        )


def _certificate_fields(decision: Decision, fields: Iterable[str]) -> Mapping[str, Any]:
    facts = decision.certificate
    out: dict[str, Any] = {}
    summary = facts.summary() if facts is not None else {}
    names = {
        "fingerprint_sha256": "fingerprint.sha256",
        "fingerprint_sha1": "fingerprint.sha1",
        "subject": "subject",
        "issuer": "issuer",
        "serial": "serial",
    }
    identity = decision.identity
    for name in fields:
        if name == "principal":
            out[name] = identity.principal if identity is not None else None
        elif name in _IDENTITY_FIELDS:
            out[name] = list(getattr(identity, name)) if identity is not None else None
        else:
            out[name] = summary.get(names[name])
    return out


class _Default(enum.Enum):
    LOG = "a DecisionLog() of its own"

    def __repr__(self) -> str:
        return "DEFAULT_LOG"


DEFAULT_LOG: Final = _Default.LOG
"""The default of the integrations' ``log`` option: each middleware, extension or
dependency writes through a :class:`DecisionLog` of its own, made when it is constructed,
so that none is shared between them. ``log=None`` turns decision logging off."""

LogOption: TypeAlias = DecisionLog | Literal[_Default.LOG] | None
"""What a ``log`` option takes: a DecisionLog, None (off) or :data:`DEFAULT_LOG`."""


def decision_log(log: LogOption) -> DecisionLog | None:
    """The decision log a ``log`` option asks for: a new DecisionLog() for the default."""
    return DecisionLog() if isinstance(log, _Default) else log
