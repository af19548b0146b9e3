"""The views; settings.MIDDLEWARE has decided every request before they run."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse

from policyengine.evaluation.decision import Decision


def orders(request: HttpRequest) -> JsonResponse:
    decision: Decision = request.policyengine_decision  # type: ignore[attr-defined]
    certificate = decision.certificate
    return JsonResponse(
        {"rule": decision.rule, "subject": certificate.subject if certificate else None}
    )


@login_required
def me(request: HttpRequest) -> JsonResponse:
    """The certificate's principal as a Django user (CertificateBackend)."""
    user = request.user
    return JsonResponse(
        {
            "username": user.get_username(),
            "staff": user.is_staff,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
    )


def health(request: HttpRequest) -> JsonResponse:  # in the policy's exclusion_paths
    return JsonResponse({"status": "ok"})
