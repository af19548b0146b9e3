"""What the benchmark scripts share: timing a case, and printing a table."""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

NOW = datetime.now(UTC).replace(microsecond=0)
"""The time every benchmark decides at: the clock when it starts, never a fixed date, so
that a benchmark runs on any day; certificates are made valid around it (:data:`VALIDITY`)."""

VALIDITY = {"not_before": NOW - timedelta(days=30), "not_after": NOW + timedelta(days=3650)}
"""The validity of a benchmark's certificates that must hold at :data:`NOW`."""


def four_predicates(pins: Sequence[str], name: str = "bench") -> str:
    """The policy every benchmark decides with: validity, subject CN, issuer O, and the
    SHA-1 fingerprint in a set; the certificate comes in App Service's header."""
    return f"""
policy: {name}
certificate:
  source: azure
sets:
  partners: [{", ".join(pins)}]
rules:
  - id: partner
    effect: allow
    when: |
      valid and subject.CN == "api-client" and issuer.O == "Contoso Ltd"
      and fingerprint in partners
"""


def handwritten(value: str, pins: frozenset[str], now: datetime) -> bool:
    """The App Service article's validator, the same policy by hand: decode the header,
    parse the certificate, check the dates, the names and the SHA-1 thumbprint, on every
    request."""
    c = x509.load_der_x509_certificate(base64.b64decode(value))
    if not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
        return False
    cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = c.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    return (
        cn == "api-client" and org == "Contoso Ltd" and c.fingerprint(hashes.SHA1()).hex() in pins
    )


def measure(case: Callable[[], object], repeats: int, seconds: float) -> list[float]:
    """Seconds per call, one sample per repeat of as many calls as fill ``seconds``.

    The case is warmed up first (at least three calls, up to a thousand or half of
    ``seconds``), which also sizes the repeats.
    """
    return measure_together({"case": case}, repeats, seconds)["case"]


def measure_together(
    cases: dict[str, Callable[[], object]], repeats: int, seconds: float
) -> dict[str, list[float]]:
    """:func:`measure` for several cases, their repeats taken in turn (case A's first,
    case B's first, ..., case A's second, ...): on a machine whose speed drifts (other
    work on shared cores), each case sees the same drift, so their ratios hold."""
    sized = {name: _warm_up(case, seconds) for name, case in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            number = sized[name]
            start = time.perf_counter()
            for _ in range(number):
                case()
            samples[name].append((time.perf_counter() - start) / number)
    return samples


def _warm_up(case: Callable[[], object], seconds: float) -> int:
    """Run ``case`` a few times; how many calls fill ``seconds``."""
    warm = 0
    start = time.perf_counter()
    while warm < 1000 and (warm < 3 or time.perf_counter() - start < seconds / 2):
        case()
        warm += 1
    return max(1, round(seconds * warm / (time.perf_counter() - start)))


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def spread(samples: Sequence[float], unit: float = 1e-6, name: str = "µs") -> str:
    """``min..max`` of the samples, in ``name`` units."""
    return f"{min(samples) / unit:.2f}..{max(samples) / unit:.2f} {name}"


def micros(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} µs"


def format_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """The first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
