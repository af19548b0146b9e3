"""What the three end-to-end apps share: where the policy is, the JSON decision log, and
the JSON a view answers with.

The test fixtures start each app in its own server process and tell it, in environment
variables, which policy file to enforce and which file to write the decision log to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

POLICY_ENV = "POLICYENGINE_E2E_POLICY"
DECISION_LOG_ENV = "POLICYENGINE_E2E_DECISION_LOG"


def policy_path() -> str:
    return os.environ[POLICY_ENV]


def decision_log_path() -> str:
    return os.environ[DECISION_LOG_ENV]


class JsonLinesFormatter(logging.Formatter):
    """One JSON object a line: the fields DecisionLog puts on its records."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "policyengine", {})
        return json.dumps({"logger": record.name, "message": record.getMessage(), **fields})


def configure_decision_log() -> None:
    """Send the ``policyengine.decisions`` records, as JSON lines, to the log file."""
    logger = logging.getLogger("policyengine.decisions")
    if any(getattr(handler, "_e2e", False) for handler in logger.handlers):
        return
    handler = logging.FileHandler(decision_log_path(), encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter())
    handler._e2e = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def describe(
    app: str, decision: Any, *, method: str, path: str, body: bytes, verify: str | None
) -> dict[str, Any]:
    """What a view saw: the decision, the certificate's facts, the proxy's verdict and the
    body it received (its length and SHA-256, so a large upload can be checked)."""
    facts = decision.certificate
    return {
        "app": app,
        "method": method,
        "path": path,
        "decision": decision.to_dict(),
        "certificate": facts.summary() if facts is not None else None,
        "proxy_verify": verify,
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
