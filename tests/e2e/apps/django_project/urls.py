from __future__ import annotations

from django.urls import re_path

from django_project.views import echo

urlpatterns = [re_path(r"^.*$", echo)]
