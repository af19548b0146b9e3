"""policyengine: authorize HTTP requests by their TLS client certificate, with policies as code.

::

    import policyengine

    policy = policyengine.load_policy("policies/partner-api.yaml")
    decision = policy.evaluate(cert=pem_bytes, path="/orders", method="GET")
    if not decision.allowed:
        ...  # decision.reason, decision.message, decision.rule

The pipeline, one module per stage: ``document`` (YAML + schema) -> ``language.parser`` ->
``language.checker`` -> ``language.compiler`` -> ``engine`` (the decision procedure).
"""

from policyengine.errors import (
    Diagnostic,
    PolicyCheckError,
    PolicyError,
    PolicyFileError,
    PolicySchemaError,
    PolicySyntaxError,
)
from policyengine.evaluation.decision import REASONS, Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.trace import Trace
from policyengine.load.loader import load_policy, policy_from_text
from policyengine.request.certificate import CertificateError, CertificateFacts, read_certificate

__all__ = [
    "REASONS",
    "CertificateError",
    "CertificateFacts",
    "Decision",
    "Diagnostic",
    "Policy",
    "PolicyCheckError",
    "PolicyError",
    "PolicyFileError",
    "PolicySchemaError",
    "PolicySyntaxError",
    "Trace",
    "load_policy",
    "policy_from_text",
    "read_certificate",
]

__version__ = "0.1.0"
