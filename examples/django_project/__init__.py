"""The Django example: settings, three views and the admin, the WSGI and ASGI applications.

From the project root::

    django-admin migrate --pythonpath examples --settings django_project.settings
    gunicorn --pythonpath examples django_project.wsgi -b 127.0.0.1:8000
    uvicorn --app-dir examples django_project.asgi:application --port 8000 --no-proxy-headers
"""
