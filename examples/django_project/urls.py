from __future__ import annotations

from django.contrib import admin
from django.urls import path

from django_project import views

urlpatterns = [
    path("orders", views.orders),
    path("me", views.me),
    path("health", views.health),
    path("admin/", admin.site.urls),
]
