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
"""

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
from policyengine.evaluation.decision import REASONS, Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.trace import Trace
from policyengine.load.loader import load_policy, policy_from_text
from policyengine.request.certificate import CertificateFacts, read_certificate
from policyengine.request.incoming import Request

__all__ = [
    "REASONS",
    "CertificateError",
    "CertificateFacts",
    "Decision",
    "Diagnostic",
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
