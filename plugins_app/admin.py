"""Admin for plugins: state badges, reasons, metrics, history and a re-probe action."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from .models import PluginHost, PluginRecord, PluginState, PluginStateTransition
from .selectors import (
    Availability,
    plugin_availability,
    plugin_reported_state,
    plugin_uptime_seconds,
)
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


def _availability(obj: PluginRecord) -> Availability:
    from execution_app.workers import live_hosts_or_none

    return plugin_availability(obj, live=live_hosts_or_none())


class StateFilter(admin.SimpleListFilter):
    """By state as any host reports it (FAILED also matches a runtime failure or quarantine)."""

    title = "state"
    parameter_name = "state__exact"

    def lookups(
        self,
        request: HttpRequest,
        model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    ) -> list[tuple[str, str]]:
        return [(s.value, s.label) for s in PluginState]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[PluginRecord]
    ) -> QuerySet[PluginRecord]:
        value = self.value()
        if not value:
            return queryset
        matches = Q(hosts__state=value, hosts__shadowed=False)
        if value == PluginState.FAILED:
            matches |= Q(state=PluginState.FAILED) | Q(quarantined=True)
        elif value == PluginState.INITIALIZED:
            matches &= ~Q(state=PluginState.FAILED) & Q(quarantined=False)
        return queryset.filter(matches).distinct()


class PluginHostInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PluginHost
    extra = 0
    can_delete = False
    fields = ("host", "state_badge", "reason", "hint", "location", "version", "queues", "probed_at")
    readonly_fields = fields
    verbose_name_plural = "Hosts (what each host found at its last sync)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="State")
    def state_badge(self, obj: PluginHost) -> str:
        return state_badge(obj.state, " (duplicate)" if obj.shadowed else "")


class PluginStateTransitionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PluginStateTransition
    extra = 0
    can_delete = False
    fields = ("at", "host", "from_state", "to_state", "reason")
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
    list_filter = [StateFilter, "requires_gpu", "quarantined", "fault_origin", "hosts__host"]
    search_fields = ["name", "description", "reason", "hosts__reason", "hosts__location"]
    actions = ["reprobe"]
    inlines = [PluginHostInline, PluginStateTransitionInline]
    fieldsets = [
        (None, {"fields": ["name", "badge", "reason", "hint", "version", "description"]}),
        ("Recent executions", {"fields": ["activity"]}),
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
                "classes": ["collapse"],  # reference material: the state history stays in view
                "fields": [
                    "source",
                    "entrypoint",
                    "requires_gpu",
                    "timeout_s",
                    "memory_mb",
                    "tools_table",
                    "manifest_pretty",
                ],
            },
        ),
        (
            "Probe",
            {"fields": ["probed_at", "fault_origin", "probe_tracebacks"]},
        ),
        ("Recent failed jobs", {"fields": ["recent_failures"]}),
    ]
    readonly_fields = [
        f.name for f in PluginRecord._meta.get_fields() if getattr(f, "concrete", False)
    ] + [
        "badge",
        "uptime",
        "tools_table",
        "manifest_pretty",
        "recent_failures",
        "probe_tracebacks",
        "activity",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # plugins come from discovery, not from a form

    @admin.display(description="State", ordering="state")
    def badge(self, obj: PluginRecord) -> str:
        state = plugin_reported_state(obj, _availability(obj))
        return state_badge(state, " (quarantined)" if obj.quarantined else "")

    @admin.display(description="Reason")
    def short_reason(self, obj: PluginRecord) -> str:
        reason = _availability(obj).reason or ""
        return reason if len(reason) <= 120 else reason[:117] + "..."

    @admin.display(description="Execution times and failures")
    def activity(self, obj: PluginRecord) -> str:
        from ops_app.charts import activity_svg, chart_summary
        from ops_app.selectors import plugin_recent_jobs

        points = plugin_recent_jobs(plugin=obj)
        return format_html(
            '<div class="warden-chart"><p class="warden-chart-summary">{}</p>{}</div>',
            chart_summary(points),
            activity_svg(points),
        )

    @admin.display(description="Uptime (s)")
    def uptime(self, obj: PluginRecord) -> float | None:
        return plugin_uptime_seconds(obj, _availability(obj))

    @admin.display(description="Probe output / tracebacks, per host")
    def probe_tracebacks(self, obj: PluginRecord) -> str:
        entries = [e for e in obj.hosts.all() if e.probe_traceback]
        if not entries:
            return "-"
        return format_html_join(
            "",
            "<p><b>{}</b> {}</p><pre>{}</pre>",
            ((e.host, e.location, e.probe_traceback) for e in entries),
        )

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
            hosts = plugin_reprobe_enqueue(names=names)
        except (KombuOperationalError, RedisError, OSError) as exc:
            self.message_user(
                request, f"Re-probe not queued: message broker unreachable ({exc})", messages.ERROR
            )
            return
        if not hosts:
            self.message_user(
                request,
                "Re-probe not queued: no live worker host (start a worker: it syncs at start)",
                messages.ERROR,
            )
            return
        self.message_user(
            request,
            f"Re-probe of {', '.join(names)} queued on {', '.join(hosts)}: each worker host probes "
            "its own copy (reload in a few seconds to see the new state)",
            messages.SUCCESS,
        )
