"""Minimal settings: no database, no sessions, no apps; the policy middleware first.

The policy is policies/nginx-partner.yaml (the app behind examples/nginx.conf), or the file
named by the environment variable POLICYENGINE_POLICY.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "nginx-partner.yaml"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "policyengine-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["policyengine.integrations.django.PolicyMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
TIME_ZONE = "UTC"

POLICYENGINE = {"POLICY": os.environ.get("POLICYENGINE_POLICY") or str(DEFAULT_POLICY)}
