"""A real headless Chromium against a real stack (gunicorn, worker, Redis): log into the admin,
read the dashboard and a plugin page, check that lists fit 1440 px, and save screenshots.

Screenshots go to $WARDEN_SCREENSHOTS_DIR (`make screenshots` points it at docs/screenshots) or
the test run's var directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

from execution_app.models import Job
from plugins_app.models import PluginRecord
from tests.conftest import RUNTIME_PLUGINS, worker_env
from tests.harness import free_port, start_gunicorn, wait_until
from tests.plugins_app.faults import copy_plugins

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WARDEN_CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH, HEIGHT = 1440, 900


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("WARDEN_SCREENSHOTS_DIR") or Path(settings.VAR_DIR) / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through chromedriver (skipped, saying why, where they are missing)."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (shutil.which(binary) or Path(binary).exists()):
            pytest.skip(f"{binary} not found: apt-get install {package} (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="warden-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save(driver: Any, name: str, max_height: int = 2400) -> Path:
    """Screenshot the page at 1440 px wide, as tall as its content (up to `max_height`)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, max(HEIGHT, min(int(height) + 120, max_height)))
    path = screenshot_dir() / name
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(WIDTH, HEIGHT)
    return path


def overflow(driver: Any) -> list[tuple[int, int]]:
    """(scrollWidth, clientWidth) of the page and of each change list's results box that
    scrolls sideways; empty when everything fits."""
    widths = driver.execute_script(
        "return [document.documentElement, ...document.querySelectorAll('.results')]"
        ".map(e => [e.scrollWidth, e.clientWidth]);"
    )
    too_wide = [(scroll, client) for scroll, client in widths if scroll > client]
    if too_wide:
        print(
            driver.execute_script(
                "return [...document.querySelectorAll('.results thead th')]"
                ".map(th => th.className + ':' + th.offsetWidth).join(' ');"
            )
        )
    return too_wide


@pytest.fixture
def stack(live, auth_client, sync_plugins, samples, tmp_path) -> Iterator[str]:
    """Plugins in every state, real jobs run by the worker, gunicorn serving admin + static."""
    faults = copy_plugins(tmp_path / "faults", "missing_package", "init_error", "import_segfault")
    sync_plugins(samples("echo", "ocr", "video_tracker"), RUNTIME_PLUGINS, faults)

    def run(plugin: str, tool: str, args: dict[str, Any] | None = None) -> None:
        auth_client.post(
            "/v1/analyze-execution",
            {"plugin": plugin, "tool": tool, "args": args or {}},
            format="json",
        )

    for seconds in (0.02, 0.15, 0.05, 0.3, 0.08, 0.2, 0.01, 0.12):
        run("echo", "sleep", {"seconds": seconds})
    faulty_runs = [
        ("ok", {}),
        ("sleep", {"seconds": 0.12}),
        ("raise", {}),
        ("sleep", {"seconds": 0.3}),
        ("ok", {}),
        ("invalid_input", {}),
        ("sleep", {"seconds": 0.05}),
        ("bad_output", {}),
        ("sleep", {"seconds": 3}),  # past its 2 s limit: TimeoutError
        ("ok", {}),
        ("raise", {}),
        ("sleep", {"seconds": 0.2}),
    ]
    for tool, args in faulty_runs:
        run("faulty", tool, args)
    for _ in range(3):  # three crashes in a row: quarantined
        run("faulty", "segfault")
    assert Job.objects.filter(status__in=["PENDING", "RUNNING"]).count() == 0
    assert PluginRecord.objects.get(name="faulty").quarantined

    # gunicorn runs with the production hashers (the tests' own settings use MD5).
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hashed = PBKDF2PasswordHasher().encode("warden-pw", PBKDF2PasswordHasher().salt())
    User.objects.create_superuser("admin", password=None)
    User.objects.filter(username="admin").update(password=hashed)
    call_command("collectstatic", interactive=False, verbosity=0)
    port = free_port()
    web = start_gunicorn(
        worker_env(
            WARDEN_SERVE_STATIC="1",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        ),
        Path(settings.VAR_DIR) / "gunicorn-browser.log",
        port,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()


def test_it_shows_the_dashboard_and_a_plugin_page_in_a_real_browser(stack, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{stack}/admin/login/?next=/admin/")
    assert browser.title == "Log in | Warden admin"
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("warden-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    try:
        wait_until(lambda: browser.find_elements(By.ID, "warden-dashboard"), 20, "the dashboard")
    except AssertionError:
        raise AssertionError(browser.current_url + "\n" + browser.page_source[:3000]) from None

    assert browser.find_element(By.CSS_SELECTOR, "#site-name a").text == "Warden"
    states = browser.find_element(By.ID, "warden-plugins").text
    assert "3\nINITIALIZED" in states.replace("\r", "")  # echo, ocr, spawner
    assert "1\nQUARANTINED" in states.upper()
    jobs = browser.find_element(By.ID, "warden-jobs").text
    for error_type, n in (("PluginCrashed", 3), ("PluginError", 2), ("TimeoutError", 1)):
        assert f"{error_type} {n}" in jobs.replace("\n", " ")
    workers = browser.find_element(By.ID, "warden-workers").text
    assert "test@" in workers
    attention = browser.find_element(By.ID, "warden-attention").text
    for name in ("faulty", "import_segfault", "init_error", "missing_package", "video_tracker"):
        assert name in attention
    assert "Quarantined after 3 consecutive crashes" in attention
    assert "No CUDA GPU" in attention
    assert overflow(browser) == []
    dashboard_png = save(browser, "dashboard.png")

    browser.get(f"{stack}/admin/plugins_app/pluginrecord/")
    save(browser, "plugins.png")
    assert overflow(browser) == [], "the plugin list scrolls sideways at 1440 px"
    browser.get(f"{stack}/admin/execution_app/job/")
    save(browser, "jobs.png")
    assert overflow(browser) == [], "the job list scrolls sideways at 1440 px"

    faulty = PluginRecord.objects.get(name="faulty")
    browser.get(f"{stack}/admin/plugins_app/pluginrecord/{faulty.pk}/change/")
    chart = browser.find_element(By.CSS_SELECTOR, "svg.warden-activity")
    assert chart.size["width"] > 800
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar-success")) == 7
    assert len(chart.find_elements(By.CSS_SELECTOR, "path.failure")) == 8
    summary = browser.find_element(By.CSS_SELECTOR, ".warden-chart-summary").text
    assert summary.startswith("Last 15 finished job(s): 7 succeeded, 8 failed; median ")
    slowest = re.search(r", slowest (\d+) ms$", summary)
    assert slowest and 1500 < int(slowest.group(1)) < 2600, summary  # the job stopped at 2 s
    history = browser.find_element(By.ID, "transitions-group").text
    assert "Quarantined after 3 consecutive crashes" in history
    assert overflow(browser) == []
    plugin_png = save(browser, "plugin.png", max_height=3000)

    assert dashboard_png.stat().st_size > 20_000 and plugin_png.stat().st_size > 20_000
