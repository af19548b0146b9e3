"""The WSGI application gunicorn serves; settings.MIDDLEWARE puts the policy in front."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
