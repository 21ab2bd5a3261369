"""Admin for jobs: status badges, filters, timings, the envelope and traceback, cancel action."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from plugins_app.admin import state_badge
from project.errors import WardenError

from .models import Job
from .services import job_cancel

STATUS_AS_STATE = {
    "PENDING": "LOADED",
    "RUNNING": "RUNNING",
    "SUCCESS": "INITIALIZED",
    "FAILED": "FAILED",
}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "short_id",
        "plugin_name",
        "tool",
        "badge",
        "error_type",
        "created_at",
        "execution_time_ms",
        "peak_memory_mb",
        "worker_host",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", "plugin_name", "error_type", "queue", "created_at"]
    search_fields = ["id", "plugin_name", "tool", "error_type"]
    date_hierarchy = "created_at"
    actions = ["cancel"]
    readonly_fields = [f.name for f in Job._meta.get_fields() if getattr(f, "concrete", False)] + [
        "badge",
        "envelope_pretty",
        "result_pretty",
        "traceback_pretty",
        "output_pretty",
    ]
    exclude = ["error", "result", "traceback", "output"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Job", ordering="id")
    def short_id(self, obj: Job) -> str:
        return format_html('<span title="{}">{}…</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Status", ordering="status")
    def badge(self, obj: Job) -> str:
        return state_badge(obj.status, colour_of=STATUS_AS_STATE.get(obj.status))

    @admin.display(description="Error envelope")
    def envelope_pretty(self, obj: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.error, indent=2)) if obj.error else "-"

    @admin.display(description="Result")
    def result_pretty(self, obj: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.result, indent=2)[:20000])

    @admin.display(description="Traceback (never sent to API clients)")
    def traceback_pretty(self, obj: Job) -> str:
        return format_html("<pre>{}</pre>", obj.traceback) if obj.traceback else "-"

    @admin.display(description="Output (stdout/stderr tail, never sent to API clients)")
    def output_pretty(self, obj: Job) -> str:
        return format_html("<pre>{}</pre>", obj.output) if obj.output else "-"

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled = 0
        for job in queryset:
            try:
                job_cancel(job=job)
                cancelled += 1
            except WardenError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"Cancelled {cancelled} job(s)", messages.SUCCESS)
