"""The admin site, branded Warden, whose index is the operators' dashboard."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from redis.exceptions import RedisError

from execution_app import workers
from execution_app.models import JobStatus
from plugins_app.models import PluginState

from . import selectors


def _changelist(model: str, **filters: Any) -> str:
    url = reverse(f"admin:{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def dashboard_context() -> dict[str, Any]:
    """Return what the dashboard shows, read through the ops selectors (a broken Redis is
    shown as such, never an error page)."""
    from plugins_app.admin import state_badge  # registers with this site: import at call time

    views = selectors.plugins_active(workers.live_hosts_or_none())
    counts = selectors.plugin_state_counts(views)
    active = selectors.jobs_active_counts()
    recent = selectors.jobs_recent(hours=1)
    since = recent.since.strftime("%Y-%m-%d %H:%M:%S")
    plugins = "plugins_app_pluginrecord"
    jobs = "execution_app_job"
    states = [
        {"label": s, "count": counts[s], "url": _changelist(plugins, state__exact=s)}
        for s in (
            PluginState.INITIALIZED,
            PluginState.FAILED,
            PluginState.UNAVAILABLE,
            PluginState.LOADED,
        )
    ]
    states.append(
        {
            "label": "quarantined",
            "count": counts["quarantined"],
            "url": _changelist(plugins, quarantined__exact=1),
        }
    )
    attention = [
        {
            "name": item.plugin.name,
            "url": reverse("admin:plugins_app_pluginrecord_change", args=[item.plugin.pk]),
            "badge": state_badge(
                item.availability.state, " (quarantined)" if item.plugin.quarantined else ""
            ),
            "reason": item.availability.reason,
            "hint": item.availability.hint,
            "since": item.since,
        }
        for item in selectors.plugins_needing_attention(views)
    ]
    needed = set(selectors.queues_with_work(views))
    queues: list[dict[str, Any]] = []
    broker_error = None
    try:
        snapshot = selectors.broker_snapshot()
        queues = [
            {
                "queue": queue,
                "depth": snapshot.queue_depths[queue],
                "workers": snapshot.workers.get(queue, []),
                "needed": queue in needed,
            }
            for queue in selectors.QUEUES
        ]
    except RedisError as exc:
        broker_error = f"{type(exc).__name__}: {exc}"
    return {
        "states": states,
        "running_jobs": active[JobStatus.RUNNING],
        "pending_jobs": active[JobStatus.PENDING],
        "jobs_by_status": [
            {
                "label": status,
                "count": n,
                "url": _changelist(jobs, status__exact=status, created_at__gte=since),
            }
            for status, n in recent.by_status.items()
        ],
        "jobs_by_error_type": [
            {
                "label": error_type,
                "count": n,
                "url": _changelist(jobs, error_type=error_type, created_at__gte=since),
            }
            for error_type, n in recent.by_error_type.items()
        ],
        "attention": attention,
        "queues": queues,
        "broker_error": broker_error,
    }


class WardenAdminSite(admin.AdminSite):
    """Django's admin site with Warden's name and a dashboard on its index page."""

    site_header = "Warden"
    site_title = "Warden admin"
    index_title = "Dashboard"
    index_template = "ops_app/dashboard.html"
    # Four models need no sidebar; its 300 px go to the change lists (1440 px, no sideways scroll).
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The index page with the dashboard above the model list (for staff who may view
        plugins and jobs; others get the plain model list)."""
        allowed = request.user.has_perms(
            ["plugins_app.view_pluginrecord", "execution_app.view_job"]
        )
        context = {"dashboard": dashboard_context() if allowed else None, **(extra_context or {})}
        response: TemplateResponse = super().index(request, extra_context=context)
        return response
