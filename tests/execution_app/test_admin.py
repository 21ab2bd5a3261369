"""Job admin: list with badges and filters, detail with envelope and traceback, cancel action."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution_app.services import job_finish
from project.errors import WardenError
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


@pytest.fixture
def jobs(sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)

    pending, failed = pending_job(tool="ok"), pending_job(tool="raise")
    job_finish(
        job_id=str(failed.pk),
        error=WardenError("PluginError", "Tool 'raise' of plugin 'faulty' raised ValueError: boom"),
        traceback="Traceback (most recent call last):\nValueError: boom",
        execution_ms=12.5,
        output="loading <model>\nstill going",
    )
    return pending, failed


def test_it_lists_jobs_with_status_badges_and_filters(admin_client, jobs):
    pending, failed = jobs

    page = admin_client.get("/admin/execution_app/job/").content.decode()
    only_failed = admin_client.get(
        "/admin/execution_app/job/?status__exact=FAILED"
    ).content.decode()

    assert ">PENDING</span>" in page and ">FAILED</span>" in page
    assert str(failed.pk) in only_failed and str(pending.pk) not in only_failed
    assert "12.5" in page  # execution time column


def test_it_shows_the_envelope_and_traceback_on_the_detail_page(admin_client, jobs):
    _, failed = jobs

    page = admin_client.get(f"/admin/execution_app/job/{failed.pk}/change/").content.decode()

    assert "Tool &#x27;raise&#x27; of plugin &#x27;faulty&#x27; raised ValueError: boom" in page
    assert "Traceback (most recent call last):" in page
    assert "loading &lt;model&gt;\nstill going" in page  # the captured output, escaped


def test_it_cancels_selected_jobs_from_the_admin(admin_client, jobs):
    pending, failed = jobs

    response = admin_client.post(
        "/admin/execution_app/job/",
        {"action": "cancel", "_selected_action": [str(pending.pk), str(failed.pk)]},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert f"Job {failed.pk} already finished with status FAILED" in messages
    assert "Cancelled 1 job(s)" in messages
    pending.refresh_from_db()
    failed.refresh_from_db()
    assert (pending.status, pending.error_type) == ("FAILED", "Cancelled")
    assert failed.error_type == "PluginError"


def test_it_lists_a_plugins_recent_failed_jobs(admin_client, jobs):
    from plugins_app.models import PluginRecord

    _, failed = jobs
    plugin = PluginRecord.objects.get(name="faulty")

    page = admin_client.get(f"/admin/plugins_app/pluginrecord/{plugin.pk}/change/").content.decode()

    assert f"/admin/execution_app/job/{failed.pk}/change/" in page


def test_it_offers_view_only_staff_no_cancel(client, jobs):
    from django.contrib.auth.models import Permission

    pending, _ = jobs
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_job"))
    client.force_login(viewer)

    page = client.get("/admin/execution_app/job/")
    response = client.post(
        "/admin/execution_app/job/",
        {"action": "cancel", "_selected_action": [str(pending.pk)]},
        follow=True,
    )

    assert page.status_code == 200
    assert 'value="cancel"' not in page.content.decode()
    assert response.status_code == 200
    pending.refresh_from_db()
    assert (pending.status, pending.error_type) == ("PENDING", "")
