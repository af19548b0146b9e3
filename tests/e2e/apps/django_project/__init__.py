"""A minimal Django project: settings, one catch-all view, and the WSGI application."""
