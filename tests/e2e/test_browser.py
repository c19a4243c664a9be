"""The Airflow UI in headless Chromium (Debian's, driven by Playwright): what a user of the provider sees.

Asserts on page content, not pixels; screenshots go to test-artifacts/screenshots/ for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_harness import Airflow, Stack

from .scenario import EXTRACTION, Observed

pytestmark = pytest.mark.e2e

pytest.importorskip("playwright", reason="playwright not installed: bash scripts/bootstrap.sh")

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINITE_ANIMATIONS_DONE = """() => document.getAnimations().every(
    a => a.playState !== 'running' || a.effect?.getComputedTiming().iterations === Infinity)"""
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} missing: apt-get install chromium (or bash scripts/ensure_chromium.sh as root)"
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    _log_in(tab, stack.airflow)
    yield tab
    context.close()


def _log_in(page: Page, airflow: Airflow) -> None:
    """The simple auth manager's form, with the password standalone generated."""
    page.goto(f"{airflow.url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow.admin_password())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags")).to_be_visible()


def _screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """After the UI's finite animations (the accordion expanding) have ended, so the picture shows the end
    state; endless ones (spinners) are left running."""
    page.wait_for_function(FINITE_ANIMATIONS_DONE)
    page.screenshot(path=SCREENSHOTS / name, full_page=full_page, animations="disabled")


def test_add_connection_form_shows_skyvern_fields(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.airflow.url}/connections")
    page.get_by_role("button", name="Add Connection").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").fill("Skyvern")
    page.keyboard.press("Enter")

    expect(dialog.get_by_text("Base URL", exact=True)).to_be_visible()
    expect(dialog.get_by_text("API key", exact=True)).to_be_visible()
    for hidden in ("Host", "Login", "Password", "Port", "Schema"):
        expect(dialog.get_by_text(hidden, exact=True)).to_have_count(0)
    _screenshot(page, "connection_form_standard_fields.png")

    dialog.get_by_text("Extra Fields", exact=True).click()
    expect(dialog.get_by_text("Request timeout (s)", exact=True)).to_be_visible()
    expect(dialog.get_by_text("Retry budget", exact=True)).to_be_visible()
    _screenshot(page, "connection_form_extra_fields.png")


def test_task_instance_page_links_to_the_skyvern_run(page: Page, stack: Stack, observed: Observed) -> None:
    assert stack.emulator is not None
    dag_id, task_id = EXTRACTION
    run_id = observed.run_id(EXTRACTION)
    skyvern_run_id = stack.airflow.xcom(dag_id, run_id, task_id, "run_id")
    app_url = stack.emulator.run(skyvern_run_id)["app_url"]

    page.goto(f"{stack.airflow.url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/details")

    link = page.get_by_role("link", name="Skyvern run")
    expect(link).to_have_attribute("href", app_url)
    expect(page.get_by_text("success", exact=True).first).to_be_visible()
    _screenshot(page, "task_instance_skyvern_run_link.png", full_page=True)
