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

from policyengine.certificate import CertificateError, CertificateFacts, read_certificate
from policyengine.decision import REASONS, Decision
from policyengine.engine import Policy, load_policy, policy_from_text
from policyengine.errors import (
    Diagnostic,
    PolicyCheckError,
    PolicyError,
    PolicyFileError,
    PolicySchemaError,
    PolicySyntaxError,
)
from policyengine.trace import Trace

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
