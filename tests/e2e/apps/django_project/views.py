"""Every path answers with what the view saw of the policy's decision."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from e2e_support import describe


def echo(request: HttpRequest) -> JsonResponse:
    decision = request.policyengine_decision  # type: ignore[attr-defined]
    return JsonResponse(
        describe(
            "django",
            decision,
            method=request.method or "",
            path=request.path,
            body=request.body,
            verify=request.headers.get("X-SSL-Client-Verify"),
        )
    )
