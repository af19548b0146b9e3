"""The URLconf of tests/test_identity_django.py: views behind Django's own auth decorators,
and the admin. Imported by Django once the settings are configured and the apps loaded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

CALLS: list[str] = []
"""Each view that ran, by name: a refused request must not reach one."""


def _described(user: Any) -> dict[str, Any]:
    if not user.is_authenticated:
        return {"authenticated": False, "username": None}
    return {
        "authenticated": True,
        "username": user.get_username(),
        "backend": getattr(user, "backend", None),
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


@login_required
def me(request: HttpRequest) -> JsonResponse:
    CALLS.append("me")
    return JsonResponse(_described(request.user))


@login_required
async def async_me(request: HttpRequest) -> JsonResponse:
    CALLS.append("async_me")
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"authenticated": False})
    return JsonResponse({"authenticated": True, "username": user.get_username()})


def whoami(request: HttpRequest) -> JsonResponse:
    """No decorator: whoever request.user is, anonymous included."""
    CALLS.append("whoami")
    return JsonResponse(_described(request.user))


@permission_required("auth.view_user", raise_exception=True)
def users(request: HttpRequest) -> JsonResponse:
    CALLS.append("users")
    return JsonResponse({"username": request.user.get_username()})


def health(request: HttpRequest) -> JsonResponse:
    CALLS.append("health")
    return JsonResponse(_described(request.user))


def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the login page")


urlpatterns = [
    path("me", me),
    path("async-me", async_me),
    path("whoami", whoami, name="whoami"),
    path("users", users),
    path("health", health),
    path("exempt", whoami, name="exempt"),
    path("login/", login),
    path("admin/", admin.site.urls),
]
