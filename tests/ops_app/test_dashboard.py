"""The admin is branded Warden; its index is a dashboard; a plugin's page charts its jobs."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.models import User

from execution_app.models import Job
from execution_app.services import job_finish
from plugins_app.models import PluginRecord, PluginStateTransition
from project.errors import WardenError
from tests.conftest import RUNTIME_PLUGINS
from tests.harness import free_port
from tests.jobs import pending_job
from tests.plugins_app.faults import copy_plugins


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def make_job(tool: str, *, error: str | None = None, ms: float | None = 10.0) -> Job:
    job = pending_job(tool=tool)
    failure = WardenError(error, f"{error} in {tool}") if error else None
    job_finish(
        job_id=str(job.pk), result=None if error else {"ok": True}, error=failure, execution_ms=ms
    )
    return job


def text_of(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_it_brands_the_admin_warden(client, db):
    page = client.get("/admin/login/").content.decode()

    assert "<title>Log in | Warden admin</title>" in page
    assert '<a href="/admin/">Warden</a>' in page
    assert "Django administration" not in page


def test_it_shows_states_attention_jobs_and_workers(
    admin_client, sync_plugins, tmp_path, redis_proc, settings
):
    import redis

    faults = copy_plugins(tmp_path / "faults", "missing_package", "init_error")
    sync_plugins(RUNTIME_PLUGINS, faults)
    for _ in range(2):
        make_job("ok")
    make_job("raise", error="PluginError")
    make_job("segfault", error="PluginCrashed", ms=None)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("warden:workers:cpu", "warden:workers:gpu", "cpu")
    client.zadd("warden:workers:cpu", {"w1@host-a": time.time()})
    client.rpush("cpu", "m1", "m2", "m3")
    try:
        page = admin_client.get("/admin/").content.decode()
    finally:
        client.delete("warden:workers:cpu", "cpu")
    text = text_of(page)

    assert "Dashboard" in text and "Plugins by state" in text
    # faulty: FAILED (runtime); init_error: FAILED (load); missing_package: UNAVAILABLE;
    # spawner (another runtime test plugin): INITIALIZED.
    assert "1 INITIALIZED 2 FAILED 1 UNAVAILABLE 0 LOADED 0 quarantined" in text
    assert "Jobs of the last hour" in text
    assert "0 PENDING 0 RUNNING 2 SUCCESS 2 FAILED" in text
    assert "Error type Jobs PluginCrashed 1 PluginError 1" in text
    assert "cpu 3 w1@host-a" in text
    assert "gpu 0 none (no plugin needs it)" in text
    attention = page[page.index('id="warden-attention"') :]
    attention = attention[: attention.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", attention, re.S)
    names = [re.search(r"<b>(\w+)</b>", row).group(1) for row in rows[1:]]
    assert names == ["faulty", "init_error", "missing_package"]
    missing = text_of(rows[3])
    assert "UNAVAILABLE" in missing
    assert "Missing Python package 'nonexistent_pkg_xyz'" in missing
    assert "pip install nonexistent_pkg_xyz" in missing
    assert missing.endswith(" 0 minutes ago ")
    faulty = text_of(rows[1])
    assert "PluginCrashed: PluginCrashed in segfault" in faulty


def test_it_dates_attention_from_the_transition_into_the_state(admin_client, sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)
    make_job("raise", error="PluginError")
    plugin = PluginRecord.objects.get(name="faulty")
    entered = PluginStateTransition.objects.get(plugin=plugin, to_state="FAILED")
    PluginStateTransition.objects.filter(pk=entered.pk).update(at="2020-01-02T03:04:05Z")
    make_job("raise", error="TimeoutError")  # same state, new reason: a later transition

    page = admin_client.get("/admin/").content.decode()

    assert '<span title="2020-01-02T03:04:05+00:00">' in page


def test_it_says_when_redis_is_unavailable(admin_client, sync_plugins, settings):
    sync_plugins(RUNTIME_PLUGINS)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert "Redis unavailable: ConnectionError" in text_of(response.content.decode())


def test_it_charts_a_plugins_recent_jobs(admin_client, sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)
    ok = [make_job("ok", ms=ms) for ms in (5.0, 40.0, 12.0)]
    failed = make_job("raise", error="PluginError", ms=20.0)
    crashed = make_job("segfault", error="PluginCrashed", ms=None)
    plugin = PluginRecord.objects.get(name="faulty")

    page = admin_client.get(f"/admin/plugins_app/pluginrecord/{plugin.pk}/change/").content.decode()

    start = page.index('<svg xmlns="http://www.w3.org/2000/svg"')
    chart = page[start : page.index("</svg>", start)]
    assert len(re.findall(r'class="bar bar-success"', chart)) == 3
    assert len(re.findall(r'class="bar bar-failed"', chart)) == 1
    assert len(re.findall(r'class="failure"', chart)) == 2
    assert f'href="/admin/execution_app/job/{crashed.pk}/change/"' in chart
    assert f'href="/admin/execution_app/job/{ok[1].pk}/change/"' in chart
    assert "· FAILED PluginError · 20 ms</title>" in chart
    assert "· FAILED PluginCrashed · no measured time</title>" in chart
    assert ">50 ms</text>" in chart  # axis top: 40 ms rounded up
    assert "Last 5 finished job(s): 3 succeeded, 2 failed; median 16 ms, slowest 40 ms" in page
    assert "<script" not in chart and "http://" not in chart.replace("http://www.w3.org", "")
    assert "State history" in page
    assert failed.pk is not None


def test_it_says_so_when_a_plugin_has_no_jobs(admin_client, sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)
    plugin = PluginRecord.objects.get(name="faulty")

    page = admin_client.get(f"/admin/plugins_app/pluginrecord/{plugin.pk}/change/").content.decode()

    assert "No finished jobs yet." in page and "warden-activity" not in page


def test_it_shows_the_dashboard_only_to_staff_who_may_view_plugins_and_jobs(client, db):
    from django.contrib.auth.models import Permission

    staff = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(staff)
    without = client.get("/admin/").content.decode()
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_pluginrecord", "view_job"])
    )
    staff = User.objects.get(pk=staff.pk)  # fresh permission cache
    client.force_login(staff)
    with_perms = client.get("/admin/")

    assert "warden-dashboard" not in without
    assert with_perms.status_code == 200
    assert 'id="warden-dashboard"' in with_perms.content.decode()
