"""The ASGI application, for uvicorn (run it with --no-proxy-headers)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

from django.core.asgi import get_asgi_application  # after the settings module

application = get_asgi_application()
