"""The views; settings.MIDDLEWARE has decided every request before they run."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from policyengine.evaluation.decision import Decision


def orders(request: HttpRequest) -> JsonResponse:
    decision: Decision = request.policyengine_decision  # type: ignore[attr-defined]
    certificate = decision.certificate
    return JsonResponse(
        {"rule": decision.rule, "subject": certificate.subject if certificate else None}
    )


def health(request: HttpRequest) -> JsonResponse:  # in the policy's exclusion_paths
    return JsonResponse({"status": "ok"})
