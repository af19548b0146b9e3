"""The exceptions policyengine raises, and the diagnostics they carry.

::

    PolicyError                 every problem with a policy file; carries diagnostics
    ├── PolicyFileError         the file cannot be read, or is not YAML
    ├── PolicySchemaError       the YAML does not fit schema/policy.schema.json
    ├── PolicySyntaxError       a ``when:`` expression does not parse
    └── PolicyCheckError        unknown names, type errors, bad set entries

Every diagnostic has a :class:`~policyengine.span.Span`, so a message always names the
file, the line and the column, shows the line with a caret, and says what to do.
Evaluating a request never raises: problems with a certificate or a request become a
deny :class:`~policyengine.evaluation.decision.Decision` with a reason.
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


class PolicyError(Exception):
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
