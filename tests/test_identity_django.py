"""CertificateBackend: ``request.user`` is the certificate principal's Django user, in a real
Django project (auth, contenttypes, sessions, messages and the admin, migrated onto an
in-memory SQLite database), through Django's own ``@login_required``,
``@permission_required`` and admin, driven by Django's test clients sending the
certificate as Azure App Service forwards it (X-ARR-ClientCert).

Django's settings are global to a process. This module configures them when it is
imported (at collection, before any test runs), so tests/test_integrations_django.py,
which configures Django only when nothing has, runs in these settings too; the example
project runs in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.http import HttpRequest
from django.test import AsyncClient, Client, override_settings
from integration_support import azure_header

from policyengine.evaluation.identity import Identity
from policyengine.testing import make_certificate

BACKEND = "policyengine.integrations.django.CertificateBackend"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
POLICY_MIDDLEWARE = "policyengine.integrations.django.PolicyMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
MIDDLEWARE = [SESSIONS, AUTHENTICATION, MESSAGES, POLICY_MIDDLEWARE]
ROOT = Path(__file__).resolve().parent.parent


def _configure() -> None:
    """Django with auth and the admin on an in-memory SQLite database shared by every
    connection of the process (Django never closes an in-memory database)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="policyengine-tests-not-secret",
        ALLOWED_HOSTS=["*"],
        # what tests/test_integrations_django.py configures for itself: its tests rely on it
        ROOT_URLCONF="test_integrations_django",
        DATA_UPLOAD_MAX_MEMORY_SIZE=16 * 1024 * 1024,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": "file:policyengine-identity?mode=memory&cache=shared",
            }
        },
        MIDDLEWARE=[],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        LOGIN_URL="/login/",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast, tests only
    )
    django.setup()


_configure()

from policyengine.integrations.django import CertificateBackend  # noqa: E402  (apps ready)

# -- certificates and the policy -------------------------------------------------------------

ALICE = make_certificate({"CN": "alice", "O": "Contoso", "OU": "Operations"}).pem
BOB = make_certificate({"CN": "bob", "O": "Contoso", "OU": "Sales"}).pem
ROOT_ADMIN = make_certificate({"CN": "root", "O": "Contoso"}).pem
MALLORY = make_certificate({"CN": "mallory", "O": "Contoso", "OU": "Operations"}).pem
NAMELESS = make_certificate({"O": "Contoso"}).pem
"""No CN: no principal (the policy's principal is subject.CN)."""
LOOKALIKE = make_certificate({"CN": "\uff41lice", "O": "Contoso"}).pem
"""CN "ａlice" (a fullwidth a): NFKC would make it "alice"; it must not be alice."""
LONG = make_certificate({"CN": "x" * 60}, dns=["a" * 60 + "." + "b" * 60 + "." + "c" * 60]).pem


def cert(pem: bytes) -> dict[str, str]:
    return {"X-ARR-ClientCert": azure_header(pem)}


POLICY = textwrap.dedent(
    """\
    policy: staff
    mode: optional
    exclusion_paths: /health
    silence: [trusted-anywhere]
    identity:
      principal: [subject.CN]
      groups: [subject.O, subject.OU]
      roles:
        ops: '"Operations" in subject.OU'
        sales: '"Sales" in subject.OU'
    rules:
      - id: banned
        effect: deny
        when: principal == "mallory"
      - id: everyone
        effect: allow
        when: "true"
    """
)
LONG_POLICY = POLICY.replace("principal: [subject.CN]", "principal: [san.dns]")


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("identity-django") / "staff.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    assert apps.is_installed("django.contrib.auth"), (
        "Django was configured before this module could: run it in a process of its own"
    )
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture(autouse=True)
def clean_tables() -> Iterator[None]:
    from identity_django_urls import CALLS

    CALLS.clear()
    yield
    _user_model().objects.all().delete()
    _group_model().objects.all().delete()


def _user_model() -> Any:
    return apps.get_model("auth", "User")


def _group_model() -> Any:
    return apps.get_model("auth", "Group")


def _project(policy: Path, *, backends: tuple[str, ...] = (BACKEND,), **engine: Any) -> Any:
    return override_settings(
        ROOT_URLCONF="identity_django_urls",
        MIDDLEWARE=MIDDLEWARE,
        AUTHENTICATION_BACKENDS=list(backends),
        POLICYENGINE={"POLICY": str(policy), **engine},
    )


@pytest.fixture
def project(policy_path: Path) -> Iterator[None]:
    """The backend alone, no user created: the principal must already be a user."""
    with _project(policy_path):
        yield


def _user(name: str, **fields: Any) -> Any:
    return _user_model().objects.create_user(name, password="a password", **fields)


def _group(name: str, *permissions: str) -> Any:
    group = _group_model().objects.create(name=name)
    for codename in permissions:
        group.permissions.add(apps.get_model("auth", "Permission").objects.get(codename=codename))
    return group


def run(coroutine: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await coroutine

    return asyncio.run(wrapper())


# -- who request.user is ----------------------------------------------------------------------


@pytest.mark.usefixtures("project")
def test_login_required_view_gets_the_principals_user_without_a_session() -> None:
    _user("alice")
    client = Client()
    response = client.get("/me", headers=cert(ALICE))
    assert response.status_code == 200
    assert response.json() == {
        "authenticated": True,
        "username": "alice",
        "backend": BACKEND,
        "groups": [],
    }
    assert "sessionid" not in response.cookies  # nothing was logged in: no session written
    assert client.get("/me", headers=cert(ALICE)).json()["username"] == "alice"
    # the next request without the certificate is anonymous: the user is per request
    assert client.get("/whoami").json() == {"authenticated": False, "username": None}


@pytest.mark.usefixtures("project")
def test_unknown_principal_is_anonymous_and_no_user_is_created() -> None:
    response = Client().get("/me", headers=cert(ALICE))
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/me"
    assert not _user_model().objects.exists()


def test_create_unknown_user_creates_it_once_with_an_unusable_password(policy_path: Path) -> None:
    with _project(policy_path, CREATE_UNKNOWN_USER=True):
        client = Client()
        assert client.get("/me", headers=cert(ALICE)).json()["username"] == "alice"
        assert client.get("/me", headers=cert(ALICE)).json()["username"] == "alice"
    created = _user_model().objects.get()
    assert created.username == "alice"
    assert not created.has_usable_password()
    assert not created.is_staff
    assert not created.is_superuser


@pytest.mark.usefixtures("project")
def test_no_principal_is_anonymous() -> None:
    _user("alice")
    client = Client()
    assert client.get("/whoami").json() == {"authenticated": False, "username": None}
    assert client.get("/whoami", headers=cert(NAMELESS)).json()["authenticated"] is False
    assert client.get("/me", headers=cert(NAMELESS)).status_code == 302


def test_a_denied_request_reaches_no_view_and_creates_no_user(policy_path: Path) -> None:
    from identity_django_urls import CALLS

    _user("mallory")
    with _project(policy_path, CREATE_UNKNOWN_USER=True):
        response = Client().get("/whoami", headers=cert(MALLORY))
    assert response.status_code == 403
    assert CALLS == []
    assert list(_user_model().objects.values_list("username", flat=True)) == ["mallory"]


@pytest.mark.usefixtures("project")
def test_inactive_user_is_refused_as_model_backend_refuses_it() -> None:
    _user("alice", is_active=False)
    client = Client()
    assert client.get("/me", headers=cert(ALICE)).status_code == 302
    assert client.get("/whoami", headers=cert(ALICE)).json()["authenticated"] is False


@pytest.mark.usefixtures("project")
def test_lookalike_and_overlong_principals_are_no_user(tmp_path: Path) -> None:
    _user("alice")
    assert Client().get("/whoami", headers=cert(LOOKALIKE)).json()["authenticated"] is False
    long_policy = tmp_path / "long.yaml"
    long_policy.write_text(LONG_POLICY)
    with _project(long_policy, CREATE_UNKNOWN_USER=True):
        seen = Client().get("/whoami", headers=cert(LONG)).json()
    assert seen["authenticated"] is False  # 182 characters do not fit a username's 150
    assert list(_user_model().objects.values_list("username", flat=True)) == ["alice"]


def test_the_certificate_wins_over_a_session_login(policy_path: Path) -> None:
    alice, bob = _user("alice"), _user("bob")
    with _project(policy_path, backends=(BACKEND, MODEL_BACKEND)):
        client = Client()
        client.force_login(bob, backend=MODEL_BACKEND)  # a password login, in the session
        assert client.get("/me", headers=cert(ALICE)).json()["username"] == alice.username
        # without a certificate the session's user does not stand in either
        assert client.get("/whoami").json()["authenticated"] is False
        # nor on a path the policy excludes: there no certificate was read at all
        assert client.get("/health", headers=cert(ALICE)).json()["authenticated"] is False
        assert client.session["_auth_user_id"] == str(bob.pk)  # the session left as it was


@pytest.mark.usefixtures("project")
def test_no_password_is_accepted_by_the_backend() -> None:
    from django.contrib.auth import authenticate

    _user("alice")
    assert authenticate(None, username="alice", password="a password") is None


def test_exempt_views_are_anonymous(policy_path: Path) -> None:
    _user("alice")
    with _project(policy_path, EXEMPT_VIEWS=["exempt"]):
        client = Client()
        assert client.get("/exempt", headers=cert(ALICE)).json()["authenticated"] is False
        assert client.get("/whoami", headers=cert(ALICE)).json()["username"] == "alice"
        assert client.get("/whoami", headers=cert(MALLORY)).status_code == 403


@pytest.mark.usefixtures("project")
def test_async_path_request_auser_and_user() -> None:
    _user("alice")
    client = AsyncClient()
    response = run(client.get("/async-me", headers=cert(ALICE)))
    assert response.status_code == 200
    assert response.json() == {"authenticated": True, "username": "alice"}
    assert run(client.get("/async-me")).status_code == 302
    sync_view = run(client.get("/me", headers=cert(ALICE)))
    assert sync_view.json()["username"] == "alice"


SEEN_BY_LATER: list[Any] = []


class UserReadingMiddleware:
    """A later middleware that reads request.user before any view runs."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        SEEN_BY_LATER.append(request.user.is_authenticated)
        return self.get_response(request)


def test_later_middleware_sees_no_user_for_a_denied_request(policy_path: Path) -> None:
    """With EXEMPT_VIEWS a refusal waits for the view to be known, so later middleware run
    for a denied request: they must see no user, though the principal is one."""
    _user("mallory")
    _user("alice")
    SEEN_BY_LATER.clear()
    with (
        _project(policy_path, EXEMPT_VIEWS=["exempt"]),
        override_settings(MIDDLEWARE=[*MIDDLEWARE, f"{__name__}.UserReadingMiddleware"]),
    ):
        assert Client().get("/whoami", headers=cert(MALLORY)).status_code == 403
        assert Client().get("/whoami", headers=cert(ALICE)).status_code == 200
    assert SEEN_BY_LATER == [False, True]


class CaseFoldingBackend(CertificateBackend):
    """A project's own rules: usernames in lower case; the ops role makes a staff user."""

    def clean_username(self, principal: str) -> str:
        return principal.lower()

    def configure_user(
        self, request: HttpRequest | None, user: Any, identity: Identity, *, created: bool
    ) -> Any:
        if created:
            user.is_staff = identity.has_role("ops")
            user.save(update_fields=["is_staff"])
        return user


def test_a_subclass_adapts_the_name_and_the_user(policy_path: Path) -> None:
    shouting = make_certificate({"CN": "CAROL", "OU": "Operations"}).pem
    backend = f"{__name__}.CaseFoldingBackend"
    with _project(policy_path, backends=(backend,), CREATE_UNKNOWN_USER=True):
        seen = Client().get("/me", headers=cert(shouting)).json()
    assert seen["username"] == "carol"
    assert seen["backend"] == backend
    assert _user_model().objects.get(username="carol").is_staff


# -- permissions, groups and the admin --------------------------------------------------------


def test_permission_required_through_groups_that_follow_the_roles(policy_path: Path) -> None:
    _group("ops", "view_user")
    _group("sales")
    _user("alice")
    bob = _user("bob")
    bob.groups.add(_group_model().objects.get(name="ops"))  # stale: bob's OU is Sales
    with _project(policy_path, SYNC_GROUPS=["roles"]):
        client = Client()
        assert client.get("/users", headers=cert(ALICE)).json() == {"username": "alice"}
        assert client.get("/me", headers=cert(ALICE)).json()["groups"] == ["ops"]
        assert client.get("/users", headers=cert(BOB)).status_code == 403
        assert client.get("/me", headers=cert(BOB)).json()["groups"] == ["sales"]
    assert list(bob.groups.values_list("name", flat=True)) == ["sales"]


def test_sync_groups_joins_existing_groups_only_and_removes_the_rest(policy_path: Path) -> None:
    _group("Contoso")
    _group("Operations")
    _group("ops")
    alice = _user("alice")
    alice.groups.add(_group("given-by-an-admin"))
    with _project(policy_path, SYNC_GROUPS=["groups"], CREATE_UNKNOWN_USER=True):
        client = Client()
        assert client.get("/me", headers=cert(ALICE)).json()["groups"] == [
            "Contoso",
            "Operations",
        ]
        assert client.get("/me", headers=cert(BOB)).json()["groups"] == ["Contoso"]
    with _project(policy_path, SYNC_GROUPS=["groups", "roles"]):
        groups = Client().get("/me", headers=cert(ALICE)).json()["groups"]
        assert groups == ["Contoso", "Operations", "ops"]
    names = set(_group_model().objects.values_list("name", flat=True))
    assert names == {"Contoso", "Operations", "ops", "given-by-an-admin"}  # none created ("Sales")
    with _project(policy_path):  # without SYNC_GROUPS the groups are left alone
        alice.groups.add(_group_model().objects.get(name="given-by-an-admin"))
        groups = Client().get("/me", headers=cert(ALICE)).json()["groups"]
        assert "given-by-an-admin" in groups


@pytest.mark.usefixtures("project")
def test_admin_index_for_a_superuser_principal() -> None:
    _user_model().objects.create_superuser("root", "root@example.com", "a password")
    _user("alice", is_staff=False)
    client = Client()
    index = client.get("/admin/", headers=cert(ROOT_ADMIN))
    assert index.status_code == 200
    assert b"Site administration" in index.content
    assert client.get("/admin/auth/user/", headers=cert(ROOT_ADMIN)).status_code == 200
    for headers in (cert(ALICE), {}):  # not staff; anonymous
        refused = client.get("/admin/", headers=headers)
        assert refused.status_code == 302
        assert refused["Location"].startswith("/admin/login/")


# -- mistakes fail at start-up, not silently --------------------------------------------------


def _start(policy: Path, middleware: list[str] | None = None, **engine: Any) -> None:
    with (
        _project(policy, **engine),
        override_settings(MIDDLEWARE=middleware or MIDDLEWARE),
    ):
        Client().get("/whoami")


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"CREATE_UNKOWN_USER": True}, "did you mean 'CREATE_UNKNOWN_USER'"),
        ({"CREATE_UNKNOWN_USER": "yes"}, '"CREATE_UNKNOWN_USER" must be True or False'),
        ({"USERNAME_FIELD": "usrname"}, "did you mean 'username'"),
        ({"USERNAME_FIELD": "email"}, "must be a unique text field of User"),
        ({"USERNAME_FIELD": "is_staff"}, "must be a unique text field"),
        ({"SYNC_GROUPS": "roles"}, '"SYNC_GROUPS" must be a list'),
        ({"SYNC_GROUPS": ["role"]}, "did you mean 'roles'"),
    ],
)
def test_settings_mistakes_are_improperly_configured(
    policy_path: Path, engine: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"settings\.POLICYENGINE") as raised:
        _start(policy_path, **engine)
    assert message in str(raised.value)


def test_user_settings_without_the_backend_are_a_mistake(policy_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="no CertificateBackend"):
        _start(policy_path, backends=(MODEL_BACKEND,), CREATE_UNKNOWN_USER=True)


def test_policy_middleware_before_authentication_middleware_is_refused(
    policy_path: Path,
) -> None:
    with pytest.raises(ImproperlyConfigured, match="must come after AuthenticationMiddleware"):
        _start(policy_path, [POLICY_MIDDLEWARE, SESSIONS, AUTHENTICATION, MESSAGES])


def test_the_backend_without_the_policy_middleware_is_refused(policy_path: Path) -> None:
    from django.contrib.auth import authenticate

    with (
        _project(policy_path),
        override_settings(MIDDLEWARE=[SESSIONS, AUTHENTICATION]),
        pytest.raises(ImproperlyConfigured, match="PolicyMiddleware is not in MIDDLEWARE"),
    ):
        authenticate(None, username="alice", password="a password")


class ReplacingMiddleware:
    """A later middleware that sets request.user itself (as a second auth scheme would)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        request.user = _user_model()(username="someone-else")
        return self.get_response(request)


def test_a_later_middleware_replacing_the_user_is_refused(policy_path: Path) -> None:
    _user("alice")
    later = f"{__name__}.ReplacingMiddleware"
    with pytest.raises(ImproperlyConfigured, match=r"request\.user was replaced"):
        _start(policy_path, [*MIDDLEWARE, later])


# -- the example project ----------------------------------------------------------------------

EXAMPLE_SCRIPT = textwrap.dedent(
    """\
    import json, os, sys

    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    django.setup()

    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0, interactive=False)
    header = {"X-SSL-Client-Cert": sys.argv[1]}
    client = Client(REMOTE_ADDR="127.0.0.1")
    seen = {
        "me": client.get("/me", headers=header),
        "me_anonymous": client.get("/me"),
        "admin_before": client.get("/admin/", headers=header),
    }
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="nildevecc")
    user.is_staff = user.is_superuser = True
    user.save()
    seen["admin_after"] = client.get("/admin/", headers=header)
    print(json.dumps({k: [r.status_code, r.content.decode()] for k, r in seen.items()}))
    """
)


def test_django_example_project(tmp_path: Path) -> None:
    """examples/django_project: the partner's certificate becomes the user "nildevecc"
    (created on its first request), whom an administrator then makes a superuser."""
    from integration_support import PARTNER_PEM, nginx_header

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.pop("POLICYENGINE_POLICY", None)
    env["POLICYENGINE_EXAMPLE_DB"] = str(tmp_path / "example.sqlite3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "examples"), env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLE_SCRIPT, nginx_header(PARTNER_PEM)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["me"][0] == 200
    assert json.loads(seen["me"][1])["username"] == "nildevecc"
    assert seen["me_anonymous"][0] == 403  # the policy requires a certificate
    assert seen["admin_before"][0] == 302  # the user exists, not yet staff
    assert seen["admin_after"][0] == 200
    assert "Site administration" in seen["admin_after"][1]
