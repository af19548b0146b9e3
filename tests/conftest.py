"""Shared fixtures: certificates made with cryptography, and policies from text."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policyengine import Policy, policy_from_text
from policyengine.testing import IssuedCertificate, make_certificate

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


def shipped_policies() -> list[Path]:
    """The policies in policies/, without their test files (*.test.yaml)."""
    return sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith(".test.yaml"))


NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
"""The one evaluation time of the tests that pin one, so that decisions do not depend on the
clock. A certificate a test decides at NOW has its validity derived from it
(:data:`VALID_AT_NOW`) or given explicitly; the default validity of ``make_certificate``
follows the wall clock and suits only decisions made at the wall clock."""

NOW_TEXT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
"""NOW as the CLI's ``--at`` takes it."""

VALID_AT_NOW = {"not_before": NOW - timedelta(days=30), "not_after": NOW + timedelta(days=365)}
"""``make_certificate(..., **VALID_AT_NOW)``: valid at NOW, whatever the date today."""


@pytest.fixture(scope="session")
def partner() -> IssuedCertificate:
    """Self-signed CN=nildevecc, O=Microsoft Corp, valid 2025..2099."""
    return make_certificate(
        {"CN": "nildevecc", "O": "Microsoft Corp"},
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2099, 12, 31, tzinfo=UTC),
        serial=0x1A2B3D,
    )


@pytest.fixture(scope="session")
def ca() -> IssuedCertificate:
    """A CA, CN=Contoso Issuing CA, O=Contoso Ltd, valid 2024..2030."""
    return make_certificate(
        {"CN": "Contoso Issuing CA", "O": "Contoso Ltd"},
        ca=True,
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="session")
def expired() -> IssuedCertificate:
    return make_certificate(
        {"CN": "nildevecc", "O": "Microsoft Corp"},
        not_before=datetime(2023, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def compile_policy() -> Callable[[str], Policy]:
    """Policy text (dedented) -> compiled Policy, named test.yaml in messages."""

    def build(text: str, name: str = "test.yaml") -> Policy:
        return policy_from_text(textwrap.dedent(text).lstrip("\n"), name)

    return build


def run_cli(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "policyengine", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8"),
    )
