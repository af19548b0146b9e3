"""The exceptions policyengine raises, the diagnostics they carry, and the reason codes.

::

    PolicyEngineError               the root: ``except PolicyEngineError`` catches them all
    ├── PolicyError                 every problem with a policy file; carries diagnostics
    │   ├── PolicyFileError         the file cannot be read, or is not YAML
    │   ├── PolicySchemaError       the YAML does not fit schema/policy.schema.json
    │   ├── PolicySyntaxError       a ``when:`` expression does not parse
    │   └── PolicyCheckError        unknown names, type errors, bad set entries
    ├── CertificateError            the bytes given are not one readable certificate
    ├── SourceError                 what a proxy forwarded cannot be used (``reason``)
    ├── TrustError                  a trust anchor, intermediate or CRL file is unusable
    ├── FactError                   one part of a certificate cannot be read
    └── GlobError                   a glob pattern in a rule is malformed

Every diagnostic has a :class:`~policyengine.span.Span`, so a message always names the
file, the line and the column, shows the line with a caret, and says what to do.
Evaluating a request never raises: problems with a certificate or a request become a
deny :class:`~policyengine.evaluation.decision.Decision` with a reason, one of the
stable codes below (their table is in :mod:`policyengine.evaluation.decision`).

Owns: the exception classes and the reason codes. Imports nothing of policyengine but
:mod:`policyengine.span`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policyengine.span import Span


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error or warning about a policy, pointing into its source."""

    span: Span
    message: str
    hint: str = ""
    severity: str = "error"
    """``error`` or ``warning``."""
    code: str = ""
    """A stable identifier such as ``unknown-name``, for tools and for silencing."""

    def render(self) -> str:
        head = f"{self.span}: {self.severity}: {self.message}"
        parts = [head]
        caret = self.span.render()
        if caret:
            parts.append(caret)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


class PolicyEngineError(Exception):
    """The root of every exception policyengine raises."""


class PolicyError(PolicyEngineError):
    """A policy file cannot be used. ``str()`` gives every diagnostic, rendered."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n\n".join(d.render() for d in self.diagnostics))

    @property
    def span(self) -> Span:
        """Where the first problem is."""
        return self.diagnostics[0].span


class PolicyFileError(PolicyError):
    """The policy file cannot be read or is not well-formed YAML."""


class PolicySchemaError(PolicyError):
    """The policy document does not fit the policy schema."""


class PolicySyntaxError(PolicyError):
    """A rule's ``when:`` expression is not valid policy language."""


class PolicyCheckError(PolicyError):
    """A rule's ``when:`` expression names something unknown or mixes types."""


class CertificateError(PolicyEngineError, ValueError):
    """The bytes given are not one readable X.509 certificate."""


class SourceError(PolicyEngineError):
    """What a proxy forwarded cannot be used; ``reason`` is one of :data:`SOURCE_REASONS`.

    The engine turns it into a deny carrying ``reason``; ``message`` says which header,
    what was wrong and where, for the explain trace and the logs.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"SourceError({self.reason!r}, {self.message!r})"


class TrustError(PolicyEngineError):
    """A trust anchor, intermediate or CRL file cannot be used; ``index`` names which entry."""

    def __init__(
        self,
        field: str,
        index: int,
        message: str,
        hint: str = "check the path: it is relative to the policy file",
    ) -> None:
        super().__init__(message)
        self.field = field
        self.index = index
        self.hint = hint


class FactError(PolicyEngineError):
    """A part of the certificate cannot be read (for example, a malformed extension).

    Raised by a fact accessor and caught by the engine around each rule: a deny rule that
    reads a broken part denies, an allow rule that does never allows.
    """


class GlobError(PolicyEngineError, ValueError):
    """A glob pattern is malformed; the checker turns it into a diagnostic."""


# -- reason codes: stable strings, safe to match on in code, logs and dashboards ------

EXCLUDED_PATH = "excluded_path"
ALLOWED_BY_RULE = "allowed_by_rule"
DUPLICATE_HEADER = "duplicate_header"
"""Two instances of a certificate or verify header: a client-sent copy slipped through."""
HEADER_TOO_LARGE = "header_too_large"
"""A value longer than ``max_header_bytes``; refused before it is decoded."""
MALFORMED_HEADER = "malformed_header"
"""Control characters, broken base64 / percent-encoding / XFCC quoting, PEM with garbage,
DER with trailing bytes, a value that is not what the configured proxy sends."""
CHAIN_TOO_LONG = "chain_too_long"
"""More intermediates than ``max_chain_length``."""
MALFORMED_CERTIFICATE = "malformed_certificate"
MISSING_CERTIFICATE = "missing_certificate"
DENIED_BY_RULE = "denied_by_rule"
RULE_ERROR = "rule_error"
NO_MATCHING_RULE = "no_matching_rule"
EVALUATION_ERROR = "evaluation_error"

SOURCE_REASONS = (DUPLICATE_HEADER, HEADER_TOO_LARGE, MALFORMED_HEADER, CHAIN_TOO_LONG)
"""The reasons a :class:`SourceError` carries."""

REASONS = (
    EXCLUDED_PATH,
    ALLOWED_BY_RULE,
    *SOURCE_REASONS,
    MALFORMED_CERTIFICATE,
    MISSING_CERTIFICATE,
    DENIED_BY_RULE,
    RULE_ERROR,
    NO_MATCHING_RULE,
    EVALUATION_ERROR,
)
"""Every reason a decision can carry, allows first."""
