"""App configs: the operations app, and the admin branded Warden with its dashboard."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class OpsConfig(AppConfig):
    default = True
    name = "ops_app"
    verbose_name = "Operations"

    def ready(self) -> None:
        """Connect the log-context signal handlers (web: request id into tasks; worker: job id)."""
        from . import signals  # noqa: F401


class WardenAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with Warden's site (branding and the dashboard on the index)."""

    default = False
    default_site = "ops_app.sites.WardenAdminSite"
