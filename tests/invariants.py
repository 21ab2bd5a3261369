"""What must hold after any amount of traffic: every job terminal, and each plugin's counters
equal to the jobs recorded for it (CONTRACT §3 rule 4, §5)."""

from __future__ import annotations

from collections import Counter

from tests.harness import wait_until


def active_jobs() -> int:
    """Jobs still PENDING or RUNNING."""
    from execution_app.models import ACTIVE_STATUSES, Job

    return Job.objects.filter(status__in=ACTIVE_STATUSES).count()


def wait_all_terminal(timeout: float) -> None:
    """Wait (polling) until no job is PENDING or RUNNING; AssertionError at the deadline."""
    wait_until(lambda: active_jobs() == 0, timeout, "every job to be terminal", interval=0.5)


def counter_mismatches() -> list[str]:
    """Each plugin's success_count / error_count against its jobs: SUCCESS jobs, and FAILED jobs
    of a plugin-fault type (client-lowered timeouts excluded). Returns the differences."""
    from execution_app.models import Job
    from plugins_app.models import PluginRecord
    from project.errors import PLUGIN_FAULTS

    successes: Counter[int] = Counter()
    errors: Counter[int] = Counter()
    for plugin_id, status, error_type, error in Job.objects.values_list(
        "plugin_id", "status", "error_type", "error"
    ).iterator():
        if status == "SUCCESS":
            successes[plugin_id] += 1
        elif status == "FAILED" and error_type in PLUGIN_FAULTS:
            details = ((error or {}).get("error") or {}).get("details") or {}
            if not details.get("client_limit"):
                errors[plugin_id] += 1
    problems = []
    for record in PluginRecord.objects.all():
        counted = (record.success_count, record.error_count)
        recorded = (successes[record.pk], errors[record.pk])
        if counted != recorded:
            problems.append(
                f"{record.name}: counters (success, error) {counted} != jobs {recorded}"
            )
    return problems


def job_totals() -> dict[str, int]:
    """Jobs by status, and FAILED ones by error type."""
    from execution_app.models import Job

    totals: Counter[str] = Counter()
    for status, error_type in Job.objects.values_list("status", "error_type").iterator():
        totals[status] += 1
        if error_type:
            totals[f"FAILED {error_type}"] += 1
    return dict(sorted(totals.items()))
