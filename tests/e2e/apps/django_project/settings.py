"""Minimal settings: no database, no sessions, no CSRF; only what serving one view needs."""

from __future__ import annotations

import os

from e2e_support import DECISION_LOG_ENV, POLICY_ENV

SECRET_KEY = "policyengine-e2e-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["policyengine.integrations.django.PolicyMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # the 5 MB upload test

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "e2e_support.JsonLinesFormatter"}},
    "handlers": {
        "decisions": {
            "class": "logging.FileHandler",
            "filename": os.environ[DECISION_LOG_ENV],
            "formatter": "json",
        }
    },
    "loggers": {
        "policyengine.decisions": {
            "handlers": ["decisions"],
            "level": "INFO",
            "propagate": False,
        }
    },
}

POLICYENGINE = {"POLICY": os.environ[POLICY_ENV]}
