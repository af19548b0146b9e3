"""How :class:`Revocation` combines its kinds of evidence (request/revocation.py).

The CRL evidence itself is tested end to end in test_trust.py and test_limbo_crl.py; here a
stand-in kind of evidence shows the shape a second kind (OCSP, issue 18) plugs into: asked in
order for each checked certificate, the first definite answer wins, an unknown from every
kind is unknown with each one's words, and each kind bounds how long a result holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from cryptography import x509

from policyengine.request.revocation import CrlEvidence, Evidence, Finding, Revocation
from policyengine.testing import make_certificate

NOW = datetime(2027, 1, 1, tzinfo=UTC)


@dataclass
class Said:
    """Evidence that says the same of every certificate, and notes whom it was asked about."""

    finding: Finding
    changes: tuple[datetime, ...] = ()
    asked: list[str] = field(default_factory=list)
    local: ClassVar[bool] = False

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Finding:
        self.asked.append(cert.subject.rfc4514_string())
        return self.finding

    def moments(self, issuers: Collection[x509.Name]) -> Iterator[datetime]:
        return iter(self.changes)

    def problems(
        self, known: Sequence[x509.Certificate], now: datetime
    ) -> list[tuple[str, int, str]]:
        return [("ocsp", 0, "a problem")]


@pytest.fixture(scope="module")
def chain() -> list[x509.Certificate]:
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=30)
    root = make_certificate({"CN": "Root"}, ca=True, not_before=start, not_after=end)
    issuing = make_certificate(
        {"CN": "Issuing"}, ca=True, issuer=root, not_before=start, not_after=end
    )
    leaf = make_certificate({"CN": "leaf"}, issuer=issuing, not_before=start, not_after=end)
    return [leaf.certificate, issuing.certificate, root.certificate]


def _revocation(*evidence: Evidence, check: str = "chain", mode: str = "hard") -> Revocation:
    return Revocation(mode, check, evidence)


GOOD = Finding("good", "good per the stand-in", NOW + timedelta(hours=4))
REVOKED = Finding("revoked", "revoked per the stand-in", None)
UNKNOWN = Finding("unknown", "the stand-in cannot say", None)


def test_the_first_definite_answer_wins(chain: list[x509.Certificate]) -> None:
    first, second = Said(GOOD), Said(REVOKED)
    found = _revocation(first, second).status(chain, NOW)
    detail = "good per the stand-in; intermediate CN=Issuing: good per the stand-in"
    assert found == Finding("good", detail, GOOD.next_update)
    assert first.asked == ["CN=leaf", "CN=Issuing"]
    assert second.asked == []


def test_an_unknown_asks_the_next_kind(chain: list[x509.Certificate]) -> None:
    first, second = Said(UNKNOWN), Said(REVOKED)
    found = _revocation(first, second).status(chain, NOW)
    assert found == Finding("revoked", "the certificate: revoked per the stand-in", None)
    assert first.asked == second.asked == ["CN=leaf"]  # revoked: the chain is decided


def test_unknown_from_every_kind_says_each(chain: list[x509.Certificate]) -> None:
    other = Finding("unknown", "nor can the other", None)
    found = _revocation(Said(UNKNOWN), Said(other), check="leaf").status(chain, NOW)
    assert found == Finding("unknown", "the stand-in cannot say; nor can the other", None)


def test_off_asks_no_evidence(chain: list[x509.Certificate]) -> None:
    said = Said(REVOKED, changes=(NOW + timedelta(hours=1),))
    revocation = _revocation(said, mode="off")
    assert revocation.status(chain, NOW) == Finding("off", "revocation checking is off", None)
    assert said.asked == []
    window = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert revocation.window(chain, NOW, *window) == window


def test_every_kind_bounds_the_window(chain: list[x509.Certificate]) -> None:
    before, after = NOW - timedelta(hours=2), NOW + timedelta(hours=3)
    revocation = _revocation(Said(GOOD, changes=(before,)), Said(GOOD, changes=(after,)))
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    assert revocation.window(chain, NOW, start, end) == (before, after)


def test_problems_come_from_every_kind(chain: list[x509.Certificate]) -> None:
    revocation = _revocation(CrlEvidence(()), Said(GOOD))
    assert revocation.problems(chain, NOW) == [("ocsp", 0, "a problem")]


def test_the_crls_alone_say_unknown_without_a_crl(chain: list[x509.Certificate]) -> None:
    found = _revocation(CrlEvidence(()), check="leaf").status(chain, NOW)
    assert found == Finding("unknown", "no CRL from CN=Issuing", None)
