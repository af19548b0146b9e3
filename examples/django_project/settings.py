"""The example's settings: the policy middleware, and certificate principals as Django users.

The policy is policies/nginx-partner.yaml (the app behind examples/nginx.conf), or the file
named by the environment variable POLICYENGINE_POLICY. The certificate's principal is
``request.user`` (CertificateBackend; created on its first request), so ``@login_required``
and the admin work as usual. The database is SQLite, at POLICYENGINE_EXAMPLE_DB or in the
system's temporary folder; create its tables once::

    django-admin migrate --pythonpath examples --settings django_project.settings
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "nginx-partner.yaml"
DEFAULT_DB = Path(tempfile.gettempdir()) / "policyengine-django-example.sqlite3"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "policyengine-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # after AuthenticationMiddleware, so that request.user is the certificate's user
    "policyengine.integrations.django.PolicyMiddleware",
]
TEMPLATES = [
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
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("POLICYENGINE_EXAMPLE_DB") or str(DEFAULT_DB),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# request.user is the Django user named by the principal of the policy's allowing decision
AUTHENTICATION_BACKENDS = ["policyengine.integrations.django.CertificateBackend"]
POLICYENGINE = {
    "POLICY": os.environ.get("POLICYENGINE_POLICY") or str(DEFAULT_POLICY),
    "CREATE_UNKNOWN_USER": True,  # a partner's first request creates its user
}
