"""Admin for plugins: state badges, reasons, metrics, history and a re-probe action."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from .models import PluginRecord, PluginStateTransition
from .selectors import plugin_reported_state, plugin_uptime_seconds
from .services import plugin_reprobe_enqueue

STATE_COLOURS = {
    "INITIALIZED": "#1e8e3e",
    "RUNNING": "#1a73e8",
    "LOADED": "#5f6368",
    "FAILED": "#d93025",
    "UNAVAILABLE": "#e37400",
}


def state_badge(state: str, extra: str = "", colour_of: str | None = None) -> str:
    """Return a coloured badge showing `state` (coloured as `colour_of`, default `state`)."""
    colour = STATE_COLOURS.get(colour_of or state, "#5f6368")
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;'
        'font-weight:600;font-size:11px;white-space:nowrap">{}{}</span>',
        colour,
        state,
        extra,
    )


class PluginStateTransitionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PluginStateTransition
    extra = 0
    can_delete = False
    fields = ("at", "from_state", "to_state", "reason")
    readonly_fields = fields
    ordering = ["-at", "-id"]
    verbose_name_plural = "State history"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PluginRecord)
class PluginRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "name",
        "badge",
        "version",
        "short_reason",
        "requires_gpu",
        "success_count",
        "error_count",
        "consecutive_failures",
        "avg_execution_time_ms",
        "last_used",
    ]
    list_filter = ["state", "requires_gpu", "quarantined", "fault_origin", "shadowed", "missing"]
    search_fields = ["name", "description", "reason", "location"]
    actions = ["reprobe"]
    inlines = [PluginStateTransitionInline]
    fieldsets = [
        (None, {"fields": ["name", "badge", "reason", "hint", "version", "description"]}),
        (
            "Metrics",
            {
                "fields": [
                    "success_count",
                    "error_count",
                    "consecutive_failures",
                    "consecutive_severe",
                    "quarantined",
                    "uptime",
                    "loaded_at",
                    "last_used",
                    "last_execution_time_ms",
                    "avg_execution_time_ms",
                ]
            },
        ),
        (
            "Definition",
            {
                "fields": [
                    "location",
                    "source",
                    "entrypoint",
                    "requires_gpu",
                    "timeout_s",
                    "memory_mb",
                    "tools_table",
                    "manifest_pretty",
                ]
            },
        ),
        (
            "Probe",
            {
                "fields": [
                    "probed_at",
                    "probe_duration_ms",
                    "fault_origin",
                    "shadowed",
                    "missing",
                    "probe_traceback",
                ]
            },
        ),
        ("Recent failed jobs", {"fields": ["recent_failures"]}),
    ]
    readonly_fields = [
        f.name for f in PluginRecord._meta.get_fields() if getattr(f, "concrete", False)
    ] + ["badge", "uptime", "tools_table", "manifest_pretty", "recent_failures"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # plugins come from discovery, not from a form

    @admin.display(description="State", ordering="state")
    def badge(self, obj: PluginRecord) -> str:
        return state_badge(plugin_reported_state(obj), " (quarantined)" if obj.quarantined else "")

    @admin.display(description="Reason")
    def short_reason(self, obj: PluginRecord) -> str:
        reason = obj.reason or ""
        return reason if len(reason) <= 120 else reason[:117] + "..."

    @admin.display(description="Uptime (s)")
    def uptime(self, obj: PluginRecord) -> float | None:
        return plugin_uptime_seconds(obj)

    @admin.display(description="Tools")
    def tools_table(self, obj: PluginRecord) -> str:
        rows = format_html_join(
            "",
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td></tr>",
            (
                (t.get("name"), t.get("description", ""), ", ".join(t.get("input_types", [])))
                for t in obj.tools or []
            ),
        )
        return format_html(
            "<table><tr><th>Tool</th><th>Description</th><th>Input types</th></tr>{}</table>", rows
        )

    @admin.display(description="Manifest")
    def manifest_pretty(self, obj: PluginRecord) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.manifest, indent=2))

    @admin.display(description="Last failed jobs")
    def recent_failures(self, obj: PluginRecord) -> str:
        jobs = obj.jobs.filter(status="FAILED").order_by("-created_at")[:10]
        if not jobs:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="/admin/execution_app/job/{}/change/">{}</a> {} — {}</li>',
                (
                    (
                        j.pk,
                        f"{j.created_at:%Y-%m-%d %H:%M:%S}",
                        j.error_type,
                        (j.error or {}).get("error", {}).get("message", ""),
                    )
                    for j in jobs
                ),
            ),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[PluginRecord]:
        from .selectors import plugin_list

        return plugin_list()

    @admin.action(description="Re-probe selected plugins", permissions=["change"])
    def reprobe(self, request: HttpRequest, queryset: QuerySet[PluginRecord]) -> None:
        names = sorted(queryset.values_list("name", flat=True))
        try:
            plugin_reprobe_enqueue(locations=list(queryset.values_list("location", flat=True)))
        except (KombuOperationalError, RedisError, OSError) as exc:
            self.message_user(
                request, f"Re-probe not queued: message broker unreachable ({exc})", messages.ERROR
            )
            return
        self.message_user(
            request,
            f"Re-probe of {', '.join(names)} queued; a worker runs it (reload in a few seconds "
            "to see the new state)",
            messages.SUCCESS,
        )
