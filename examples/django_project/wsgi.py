"""The WSGI application, for gunicorn."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

from django.core.wsgi import get_wsgi_application  # after the settings module

application = get_wsgi_application()
