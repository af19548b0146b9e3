"""The Django middleware and view decorator in a real Django project (settings configured
here, URLs below), through both of Django's request paths: the sync one (``Client``, and
the bare ``WSGIHandler``) and the async one (``AsyncClient``, ASGI scope)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import types
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from integration_support import (
    FABRIKAM_PEM,
    NGINX_PARTNER,
    PARTNER_API,
    PARTNER_PEM,
    UnreadableInput,
    assert_tells_nothing,
    azure_header,
    cn_policy,
    nginx_header,
    open_policy,
    refusal_cases,
    secret_policy,
)
from werkzeug.test import EnvironBuilder

from policyengine.evaluation.decision import Decision
from policyengine.integrations import REFUSALS, DenyResponse
from policyengine.integrations.django import PolicyMiddleware, require_certificate
from policyengine.integrations.runtime import DECISION_LOGGER

MIDDLEWARE = "policyengine.integrations.django.PolicyMiddleware"
PARTNER = {"X-ARR-ClientCert": azure_header(PARTNER_PEM)}
FABRIKAM = {"X-ARR-ClientCert": azure_header(FABRIKAM_PEM)}
NGINX = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM)}
JSON = {"Accept": "application/json"}


# -- the project's views and URLs -----------------------------------------------------------


def _described(request: HttpRequest) -> dict[str, Any]:
    decision: Decision | None = getattr(request, "policyengine_decision", None)
    if decision is None:
        return {"reason": None, "asgi": hasattr(request, "scope")}
    return {
        "reason": decision.reason,
        "policy": decision.policy,
        "subject": decision.certificate.subject if decision.certificate else None,
        "asgi": hasattr(request, "scope"),
    }


def orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_described(request))


async def async_orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_described(request))


def status_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_described(request))


def upload(request: HttpRequest) -> JsonResponse:
    body = request.body
    return JsonResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


@require_certificate(NGINX_PARTNER)
def nginx_only(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_described(request))


@require_certificate()
async def settings_policy(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_described(request))


def custom_refusal(decision: Decision) -> DenyResponse | None:
    """An ON_DENY hook, named by its dotted path in the settings."""
    if decision.reason == "missing_certificate":
        return DenyResponse(401, (("Content-Type", "text/plain"),), b"certificate please")
    return None


urlpatterns = [
    path("orders", orders),
    path("async-orders", async_orders),
    path("health", status_view, name="health"),
    path("status", status_view, name="status"),
    path("upload", upload),
    path("nginx-only", nginx_only),
    path("settings-policy", settings_policy),
]


TENANT_HOST = "tenant.test"
tenant_urls = types.ModuleType("tenant_urls")
"""The URLconf of TENANT_HOST: /status is a protected view here, while in ROOT_URLCONF it is
the exempt view "status"; /tenant-health is exempt here ("status") and exists only here."""
tenant_urls.urlpatterns = [  # type: ignore[attr-defined]
    path("status", orders, name="tenant-orders"),
    path("tenant-health", status_view, name="status"),
]


class HostUrlconfMiddleware:
    """Per-host URLconfs as django-hosts and tenant middleware do them: set
    ``request.urlconf`` for the host, after policyengine's middleware has run."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        if request.get_host() == TENANT_HOST:
            request.urlconf = tenant_urls  # type: ignore[attr-defined]
        return self.get_response(request)


class AnsweringMiddleware:
    """A later middleware that answers /answered itself, without any view."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        if request.path == "/answered":
            return HttpResponse("answered by a middleware")
        return self.get_response(request)


@pytest.fixture(scope="module", autouse=True)
def django_project() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="policyengine-tests-not-secret",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            DATABASES={},
            MIDDLEWARE=[],
            USE_TZ=True,
            DATA_UPLOAD_MAX_MEMORY_SIZE=16 * 1024 * 1024,
        )
        django.setup()


@pytest.fixture
def guarded(django_project: None) -> Iterator[None]:
    """The middleware in front of every view, with the shipped partner-api policy."""
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[MIDDLEWARE],
        POLICYENGINE={"POLICY": str(PARTNER_API)},
    ):
        yield


def run(coroutine: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await coroutine

    return asyncio.run(wrapper())


# -- the middleware, sync path ---------------------------------------------------------------


@pytest.mark.usefixtures("guarded")
def test_sync_path_decides_from_request_meta() -> None:
    client = Client()
    allowed = client.get("/orders", headers=PARTNER)
    assert allowed.status_code == 200
    assert allowed.json() == {
        "reason": "allowed_by_rule",
        "policy": "partner-api",
        "subject": "O=Microsoft Corp,CN=nildevecc",
        "asgi": False,
    }
    assert client.get("/health").json()["reason"] == "excluded_path"

    text = client.get("/orders", headers=FABRIKAM)
    assert text.status_code == 403
    assert text["Content-Type"] == "text/plain; charset=utf-8"
    assert text.content.startswith(b"403 Forbidden: no_matching_rule: ")
    as_json = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert as_json.status_code == 403
    assert as_json.json()["reason"] == "no_matching_rule"
    assert as_json["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("guarded")
def test_large_body_reaches_the_view_intact() -> None:
    body = os.urandom(4 * 1024 * 1024)
    response = Client().post(
        "/upload", data=body, content_type="application/octet-stream", headers=PARTNER
    )
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.usefixtures("guarded")
def test_refused_body_is_never_read_by_the_wsgi_handler() -> None:
    from django.core.handlers.wsgi import WSGIHandler

    stream = UnreadableInput()
    environ = EnvironBuilder(
        path="/upload", method="POST", headers=FABRIKAM, data=b"x" * 1000
    ).get_environ()
    environ.update({"wsgi.input": stream, "REMOTE_ADDR": "127.0.0.1"})
    statuses: list[str] = []
    chunks = WSGIHandler()(environ, lambda status, headers, *rest: statuses.append(status))
    assert statuses == ["403 Forbidden"]
    assert b"".join(chunks).startswith(b"403 Forbidden: no_matching_rule")
    assert not stream.touched


def test_on_deny_expose_trace_and_log_fields(
    django_project: None, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "POLICY": PARTNER_API,
        "EXPOSE_TRACE": True,
        "LOG_FIELDS": ["serial"],
        "ON_DENY": f"{__name__}.custom_refusal",
    }
    with (
        override_settings(MIDDLEWARE=[MIDDLEWARE], POLICYENGINE=config),
        caplog.at_level(logging.INFO, logger=DECISION_LOGGER),
    ):
        client = Client()
        hooked = client.get("/orders")
        traced = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert (hooked.status_code, hooked.content) == (401, b"certificate please")
    assert traced.status_code == 403 and "trace" in traced.json()
    records = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert [r.reason for r in records] == ["missing_certificate", "no_matching_rule"]
    assert set(records[1].policyengine) >= {"serial"}
    assert "subject" not in records[1].policyengine


def test_refusal_tells_the_client_the_reason_code_and_a_generic_sentence_only(
    django_project: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The sync and the async path: never the CN, issuer, pin, rule or policy name of the
    decision's message, which goes to the decision log."""
    config = {"POLICY": secret_policy(tmp_path / "secret.yaml")}
    with override_settings(MIDDLEWARE=[MIDDLEWARE], POLICYENGINE=config):
        for headers, reason, explained in refusal_cases():

            async def from_async(headers: dict[str, str] = headers) -> Any:
                return await AsyncClient().get("/async-orders", headers={**headers, **JSON})

            caplog.clear()
            with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
                text = Client().get("/orders", headers=headers)
                as_json = Client().get("/orders", headers={**headers, **JSON})
                from_loop = run(from_async())
            assert text.content.decode() == f"403 Forbidden: {reason}: {REFUSALS[reason]}\n"
            expected = {"error": "forbidden", "reason": reason, "message": REFUSALS[reason]}
            assert as_json.json() == from_loop.json() == expected
            for response in (text, as_json, from_loop):
                assert response.status_code == 403
                assert_tells_nothing(response.content, response.headers)
            records = [r for r in caplog.records if r.name == DECISION_LOGGER]
            assert [explained in r.explanation for r in records] == [True, True, True]


def test_exempt_views_by_url_name_or_dotted_path(django_project: None) -> None:
    config = {"POLICY": PARTNER_API, "EXEMPT_VIEWS": ["status", f"{__name__}.upload"]}
    with override_settings(MIDDLEWARE=[MIDDLEWARE], POLICYENGINE=config):
        client = Client()
        assert client.get("/status").json() == {"reason": None, "asgi": False}
        assert client.post("/upload", data=b"abc", content_type="text/plain").status_code == 200
        assert client.get("/orders").status_code == 403
        assert client.get("/no-such-page").status_code == 403  # unresolved: decided


# -- the middleware, async path ---------------------------------------------------------------


@pytest.mark.usefixtures("guarded")
def test_async_path_decides_from_the_asgi_scope() -> None:
    async def requests() -> list[Any]:
        client = AsyncClient()
        return [
            await client.get("/async-orders", headers=PARTNER),
            await client.get("/orders", headers=PARTNER),  # a sync view behind it
            await client.get("/async-orders", headers={**FABRIKAM, **JSON}),
            await client.get("/health"),
        ]

    allowed, sync_view, refused, excluded = run(requests())
    assert allowed.status_code == 200
    assert allowed.json() == {
        "reason": "allowed_by_rule",
        "policy": "partner-api",
        "subject": "O=Microsoft Corp,CN=nildevecc",
        "asgi": True,
    }
    assert sync_view.json()["reason"] == "allowed_by_rule"
    assert refused.status_code == 403
    assert refused.json()["reason"] == "no_matching_rule"
    assert excluded.json()["reason"] == "excluded_path"


@pytest.mark.usefixtures("guarded")
def test_middleware_is_a_coroutine_function_only_behind_async_handlers() -> None:
    async def async_next(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    def sync_next(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    assert PolicyMiddleware.sync_capable and PolicyMiddleware.async_capable
    assert iscoroutinefunction(PolicyMiddleware(async_next))
    assert not iscoroutinefunction(PolicyMiddleware(sync_next))


def test_async_path_trusts_the_scope_client_address(django_project: None) -> None:
    with override_settings(MIDDLEWARE=[MIDDLEWARE], POLICYENGINE={"POLICY": NGINX_PARTNER}):

        async def requests() -> tuple[Any, Any]:
            trusted = await AsyncClient().get("/async-orders", headers=NGINX)
            # Django's own ASGI handler, served by httpx from an outside address
            transport = httpx.ASGITransport(ASGIHandler(), client=("203.0.113.7", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                outsider = await http.get("/async-orders", headers={**NGINX, **JSON})
            return trusted, outsider

        trusted, outsider = run(requests())
    assert trusted.status_code == 200  # AsyncClient's scope client is 127.0.0.1
    assert outsider.status_code == 403, outsider.text
    assert outsider.json()["reason"] == "missing_certificate"


# -- configuration is checked when the middleware is made -------------------------------------


def _next(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "is not set"),
        ("policy.yaml", "must be a dict"),
        ({}, '"POLICY" is required'),
        ({"POLICY": 3}, '"POLICY" must be a policy file path'),
        ({"POLICY": PARTNER_API, "EXPOSE_TRACES": True}, "did you mean 'EXPOSE_TRACE'"),
        ({"POLICY": PARTNER_API, "EXPOSE_TRACE": "yes"}, '"EXPOSE_TRACE" must be True or False'),
        ({"POLICY": PARTNER_API, "LOG_FIELDS": "subject"}, '"LOG_FIELDS" must be a list'),
        ({"POLICY": PARTNER_API, "LOG_FIELDS": ["subjet"]}, "unknown log fields"),
        ({"POLICY": PARTNER_API, "LOG_TRACE": 1}, '"LOG_TRACE" must be True or False'),
        ({"POLICY": PARTNER_API, "ON_DENY": "no.such.hook"}, "\"ON_DENY\" 'no.such.hook'"),
        ({"POLICY": PARTNER_API, "ON_DENY": 42}, '"ON_DENY" must be a dotted path'),
        ({"POLICY": PARTNER_API, "EXEMPT_VIEWS": "health"}, '"EXEMPT_VIEWS" must be a list'),
    ],
)
def test_bad_settings_are_improperly_configured(
    django_project: None, config: Any, message: str
) -> None:
    with override_settings(POLICYENGINE=config), pytest.raises(ImproperlyConfigured) as error:
        PolicyMiddleware(_next)
    assert str(error.value).startswith("settings.POLICYENGINE: ")
    assert message in str(error.value)


def test_a_broken_policy_file_is_improperly_configured_with_its_location(
    django_project: None, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: broken\nrules:\n  - id: r\n    effect: allow\n    when: subjet.CN\n")
    with (
        override_settings(POLICYENGINE={"POLICY": broken}),
        pytest.raises(ImproperlyConfigured, match="does not load") as error,
    ):
        PolicyMiddleware(_next)
    assert f"{broken}:5:" in str(error.value)


# -- the decorator -----------------------------------------------------------------------------


def test_decorator_with_its_own_policy_without_the_middleware(django_project: None) -> None:
    with override_settings(MIDDLEWARE=[], POLICYENGINE=None):
        client = Client()
        assert client.get("/orders").json() == {"reason": None, "asgi": False}  # unguarded
        allowed = client.get("/nginx-only", headers=NGINX)  # from 127.0.0.1: nginx is trusted
        assert allowed.json()["policy"] == "nginx-partner"
        refused = client.get("/nginx-only", headers={**PARTNER, **JSON})
        assert refused.status_code == 403
        assert refused.json()["reason"] == "missing_certificate"


def test_decorator_without_a_policy_uses_the_settings_policy(
    django_project: None, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(MIDDLEWARE=[], POLICYENGINE={"POLICY": PARTNER_API}):
        sync_client = Client()
        assert sync_client.get("/settings-policy", headers=PARTNER).status_code == 200
        assert sync_client.get("/settings-policy", headers=FABRIKAM).status_code == 403

        async def from_async_client() -> Any:
            return await AsyncClient().get("/settings-policy", headers=PARTNER)

        assert run(from_async_client()).json()["asgi"] is True

    with (
        override_settings(MIDDLEWARE=[MIDDLEWARE], POLICYENGINE={"POLICY": PARTNER_API}),
        caplog.at_level(logging.INFO, logger=DECISION_LOGGER),
    ):
        assert Client().get("/settings-policy", headers=PARTNER).status_code == 200
    # the middleware decided; the decorator did not decide (and log) again
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


def test_decorated_views_stay_sync_or_async(django_project: None) -> None:
    """Django picks how to call a view by whether it is a coroutine function."""
    assert iscoroutinefunction(settings_policy)
    assert not iscoroutinefunction(nginx_only)


def _urlconf(name: str, *patterns: Any) -> types.ModuleType:
    """A URLconf module made in a test: Django takes a module object wherever it takes the
    dotted path of one (ROOT_URLCONF, request.urlconf)."""
    module = types.ModuleType(name)
    module.urlpatterns = list(patterns)  # type: ignore[attr-defined]
    return module


def test_stacked_decorators_decide_the_settings_policy_after_an_allow_under_another(
    django_project: None, tmp_path: Path
) -> None:
    """The outer decorator's policy `partner` lets /stacked through without a certificate;
    the inner one uses the settings' policy, also called `partner`, which requires one."""
    strict = cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner")

    @require_certificate(open_policy(tmp_path / "lenient.yaml"))
    @require_certificate()
    def stacked(request: HttpRequest) -> JsonResponse:
        return JsonResponse(_described(request))

    urls = _urlconf("stacked_urls", path("orders", stacked))
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=[], POLICYENGINE={"POLICY": strict}):
        refused = Client().get("/orders", headers=JSON)
        allowed = Client().get("/orders", headers=PARTNER)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "missing_certificate"
    assert allowed.json()["reason"] == "allowed_by_rule"


def test_a_decorator_with_a_stricter_policy_of_the_middlewares_name_decides_again(
    django_project: None, tmp_path: Path
) -> None:
    strict = cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner")

    @require_certificate(strict)
    def admin(request: HttpRequest) -> JsonResponse:
        return JsonResponse(_described(request))

    urls = _urlconf("strict_urls", path("admin", admin))
    config = {"POLICY": open_policy(tmp_path / "lenient.yaml")}
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=[MIDDLEWARE], POLICYENGINE=config):
        refused = Client().get("/admin", headers=JSON)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "missing_certificate"


@pytest.mark.parametrize("interface", ["sync", "async"])
def test_exempt_views_apply_to_the_view_of_the_urlconf_a_later_middleware_sets(
    django_project: None, interface: str, caplog: pytest.LogCaptureFixture
) -> None:
    """/status is the exempt view in ROOT_URLCONF, and a protected view in the tenant's
    URLconf, which a middleware after policyengine's sets: the tenant's /status is decided
    (refused without a certificate), and the tenant's own exempt view is not."""
    config = {"POLICY": PARTNER_API, "EXEMPT_VIEWS": ["status"]}
    middleware = [MIDDLEWARE, f"{__name__}.HostUrlconfMiddleware"]

    def requests() -> list[Any]:
        wanted = [
            ("/status", TENANT_HOST, {}),
            ("/status", TENANT_HOST, PARTNER),
            ("/tenant-health", TENANT_HOST, {}),
            ("/status", "api.test", {}),
        ]
        if interface == "sync":
            client = Client()
            return [client.get(p, headers={**h, **JSON, "Host": host}) for p, host, h in wanted]

        async def each() -> list[Any]:
            # Django's ASGI handler through httpx: AsyncClient would send its own Host too
            transport = httpx.ASGITransport(ASGIHandler(), client=("10.0.0.5", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
                return [
                    await http.get(f"http://{host}{p}", headers={**h, **JSON})
                    for p, host, h in wanted
                ]

        return list(run(each()))

    with (
        override_settings(MIDDLEWARE=middleware, POLICYENGINE=config),
        caplog.at_level(logging.INFO, logger=DECISION_LOGGER),
    ):
        tenant_status, tenant_allowed, tenant_health, root_status = requests()
    assert tenant_status.status_code == 403
    assert tenant_status.json()["reason"] == "missing_certificate"
    assert tenant_allowed.json()["reason"] == "allowed_by_rule"
    asgi = interface == "async"
    assert tenant_health.json() == {"reason": None, "asgi": asgi}  # exempt: not decided
    assert root_status.json() == {"reason": None, "asgi": asgi}
    records = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert [(r.path, r.reason) for r in records] == [
        ("/status", "missing_certificate"),
        ("/status", "allowed_by_rule"),
    ]


@pytest.mark.parametrize("interface", ["sync", "async"])
def test_with_exempt_views_a_refused_request_no_view_answers_still_gets_the_refusal(
    django_project: None, interface: str
) -> None:
    """Deciding waits for the view only to learn whether it is exempt: a response that a
    later middleware makes itself, or a 404, is replaced by the refusal."""
    config = {"POLICY": PARTNER_API, "EXEMPT_VIEWS": ["status"]}
    middleware = [MIDDLEWARE, f"{__name__}.AnsweringMiddleware"]

    def requests() -> list[Any]:
        wanted = [("/answered", {}), ("/answered", PARTNER), ("/no-such-page", {})]
        if interface == "sync":
            return [Client().get(p, headers={**h, **JSON}) for p, h in wanted]

        async def each() -> list[Any]:
            return [await AsyncClient().get(p, headers={**h, **JSON}) for p, h in wanted]

        return list(run(each()))

    with override_settings(MIDDLEWARE=middleware, POLICYENGINE=config):
        refused, allowed, unresolved = requests()
    assert refused.status_code == 403
    assert refused.json()["reason"] == "missing_certificate"
    assert allowed.content == b"answered by a middleware"
    assert unresolved.status_code == 403
    assert unresolved.json()["reason"] == "missing_certificate"
