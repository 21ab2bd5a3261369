"""Admin: the plugin changelist, filters, search, change page and the re-probe action."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from plugins_app.models import PluginState
from tests.harness import wait_until
from tests.plugins_app.faults import FAULTS, copy_plugins, plugin_view

CHANGELIST = "/admin/plugins_app/pluginrecord/"
RED_BADGE = (
    '<span style="background:#d93025;color:#fff;padding:2px 8px;border-radius:10px;'
    'font-weight:600;font-size:11px;white-space:nowrap">FAILED</span>'
)
GREEN_BADGE = (
    '<span style="background:#1e8e3e;color:#fff;padding:2px 8px;border-radius:10px;'
    'font-weight:600;font-size:11px;white-space:nowrap">INITIALIZED</span>'
)


def listed(client: Client, query: str = "") -> list[str]:
    """Names on the changelist for `query`, in display order."""
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return [r.name for r in response.context["cl"].result_list]


@pytest.fixture
def synced(sync_plugins: Any, tmp_path: Path, settings: Any) -> Path:
    settings.WARDEN_PLUGIN_DIRS = [tmp_path]
    copy_plugins(tmp_path, "healthy", "init_error", "needs_gpu", "missing_program")
    sync_plugins(tmp_path)
    return tmp_path


def test_it_shows_coloured_state_badges_and_reasons(synced: Path, admin_client: Client) -> None:
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert RED_BADGE in page
    assert GREEN_BADGE in page
    assert html.escape("InitError: ValueError: model path not configured") in page
    assert html.escape("Missing program 'nonexistent_program_xyz' on PATH") in page
    assert listed(admin_client) == ["healthy", "init_error", "missing_program", "needs_gpu"]


def test_it_filters_by_state_and_gpu(synced: Path, admin_client: Client) -> None:
    assert listed(admin_client, "?state__exact=FAILED") == ["init_error"]
    assert listed(admin_client, "?state__exact=INITIALIZED") == ["healthy"]
    assert listed(admin_client, "?state__exact=UNAVAILABLE") == ["missing_program", "needs_gpu"]
    assert listed(admin_client, "?requires_gpu__exact=1") == ["needs_gpu"]
    assert listed(admin_client, "?requires_gpu__exact=0") == [
        "healthy",
        "init_error",
        "missing_program",
    ]


def test_it_searches_names_and_reasons(synced: Path, admin_client: Client) -> None:
    assert listed(admin_client, "?q=init_err") == ["init_error"]
    assert listed(admin_client, "?q=nonexistent_program") == ["missing_program"]
    assert listed(admin_client, "?q=no-such-thing") == []


def test_it_shows_manifest_tools_and_history_on_the_change_page(
    synced: Path, admin_client: Client
) -> None:
    record = plugin_view("init_error")

    response = admin_client.get(f"{CHANGELIST}{record.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert html.escape(json.dumps(record.manifest, indent=2)) in page
    assert "<tr><td><b>run</b></td><td></td><td></td></tr>" in page
    assert "State history" in page
    assert page.count("InitError: ValueError: model path not configured") >= 2  # reason + history
    assert html.escape('raise ValueError("model path not configured")') in page  # traceback


@pytest.mark.slow
def test_it_re_probes_the_selected_plugins_on_a_worker(
    transactional_db: None,
    celery_worker: Any,
    synced: Path,
    admin_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugins_app import services

    broken = plugin_view("init_error")
    other = plugin_view("missing_program")
    other_probed_at = other.probed_at
    shutil.copy(FAULTS / "healthy" / "plugin.py", tmp_path / "init_error" / "plugin.py")
    monkeypatch.setattr(services, "plugin_sync", None)  # never in this (web) process

    response = admin_client.post(
        CHANGELIST, {"action": "reprobe", "_selected_action": [broken.pk]}, follow=True
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        f"Re-probe of init_error queued on {settings.WARDEN_HOST_NAME}: each worker host probes "
        "its own copy (reload in a few seconds to see the new state)"
    ]
    wait_until(
        lambda: plugin_view("init_error").state == PluginState.INITIALIZED,
        60,
        "the worker to re-probe the plugin",
    )
    broken.refresh_from_db()
    assert (broken.state, broken.reason, broken.hint) == (PluginState.INITIALIZED, None, None)
    assert [t.to_state for t in broken.transitions.order_by("id")] == ["FAILED", "INITIALIZED"]
    other.refresh_from_db()
    assert other.state == PluginState.UNAVAILABLE
    assert other.probed_at == other_probed_at


@pytest.fixture
def viewer_client(db: None) -> Client:
    """A staff user who may only view plugins and jobs."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_pluginrecord", "view_job"])
    )
    client = Client()
    client.force_login(user)
    return client


def test_it_offers_view_only_staff_no_re_probe(
    synced: Path, viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins_app import services

    queued: list[Any] = []
    monkeypatch.setattr(services, "plugin_reprobe_enqueue", lambda **kw: queued.append(kw))
    broken = plugin_view("init_error")

    page = viewer_client.get(CHANGELIST)
    response = viewer_client.post(
        CHANGELIST, {"action": "reprobe", "_selected_action": [broken.pk]}, follow=True
    )

    assert page.status_code == 200
    assert 'value="reprobe"' not in page.content.decode()
    assert response.status_code == 200
    assert queued == []
    assert plugin_view("init_error").probed_at == broken.probed_at


def test_it_does_not_offer_an_add_button(synced: Path, admin_client: Client) -> None:
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.django_db
def test_it_keeps_anonymous_users_out(client: Client) -> None:
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={CHANGELIST}"
