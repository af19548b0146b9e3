"""policyengine: authorize HTTP requests by their TLS client certificate, with policies as code.

::

    import policyengine

    policy = policyengine.load_policy("policies/partner-api.yaml")
    decision = policy.evaluate(cert=pem_bytes, path="/orders", method="GET")
    if not decision.allowed:
        ...  # decision.reason, decision.message, decision.rule

The pipeline, one folder per stage: ``load`` (YAML + schema -> the loading pipeline) ->
``language`` (parse, check) -> ``evaluation`` (compile; the decision procedure), with
``request`` reading certificates, trust and forwarded headers. docs/architecture.md is
the map.

The public names are imported lazily (see ``__getattr__``). Must not import any stage at
import time: ``policyengine.language`` is imported alone by tools that only parse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from policyengine.errors import (
    CertificateError,
    Diagnostic,
    PolicyCheckError,
    PolicyEngineError,
    PolicyError,
    PolicyFileError,
    PolicySchemaError,
    PolicySyntaxError,
    SourceError,
    TrustError,
)

if TYPE_CHECKING:
    from policyengine.evaluation.decision import REASONS, Decision
    from policyengine.evaluation.engine import Policy
    from policyengine.evaluation.identity import Identity
    from policyengine.evaluation.trace import Trace
    from policyengine.load.loader import load_policy, policy_from_text
    from policyengine.request.certificate import CertificateFacts, read_certificate
    from policyengine.request.incoming import Request

_LAZY = {
    "REASONS": "policyengine.evaluation.decision",
    "Decision": "policyengine.evaluation.decision",
    "Policy": "policyengine.evaluation.engine",
    "Identity": "policyengine.evaluation.identity",
    "Trace": "policyengine.evaluation.trace",
    "load_policy": "policyengine.load.loader",
    "policy_from_text": "policyengine.load.loader",
    "CertificateFacts": "policyengine.request.certificate",
    "read_certificate": "policyengine.request.certificate",
    "Request": "policyengine.request.incoming",
}
"""The public names that live in the stages, each imported on first use: importing
``policyengine.language`` (or any other part) loads no more than it needs, and no
``cryptography`` unless a certificate is read."""


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policyengine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API, whether imported yet or not."""
    return sorted([*__all__, "__version__"])


__all__ = [
    "REASONS",
    "CertificateError",
    "CertificateFacts",
    "Decision",
    "Diagnostic",
    "Identity",
    "Policy",
    "PolicyCheckError",
    "PolicyEngineError",
    "PolicyError",
    "PolicyFileError",
    "PolicySchemaError",
    "PolicySyntaxError",
    "Request",
    "SourceError",
    "Trace",
    "TrustError",
    "load_policy",
    "policy_from_text",
    "read_certificate",
]

__version__ = "0.1.0"
