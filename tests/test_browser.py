"""The main journey in a real browser: headless Chromium against a running app.

Upload a CSV (and an item file) through the file uploader, map and ingest it,
train a small model with the fast preset, then open the interests, the
recommendations and the metrics. A screenshot of every step is saved under
``artifacts/screenshots/`` (git-ignored); any Streamlit exception box or browser
console error fails the test.

Needs Debian's ``chromium`` (``make test`` installs it when it can); skipped with
the reason when no Chromium is found.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _helpers import every_cpu

from core.data.demo import generate_demo

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("RECLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _every_cpu() -> Iterator[None]:
    """The app server, Chromium and the training worker share every CPU, not this pytest
    worker's pinned share: on one core the pages outlast the test's timeouts."""
    with every_cpu():
        yield


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A RecLens server on a fresh database (demo seeded, no automatic training)."""
    home = tmp_path_factory.mktemp("browser")
    port = _free_port()
    env = {
        **os.environ,
        "RECLENS_DB": str(home / "reclens.duckdb"),
        "RECLENS_AUTOTRAIN": "0",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py"]
        + ["--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1"]
        + ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("the app did not start:\n" + (home / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def upload_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A behaviour log and an item file as an analyst would export them."""
    folder = tmp_path_factory.mktemp("upload")
    demo = generate_demo(n_users=250, n_items=150, seed=11)
    events = folder / "shop_events.csv"
    demo.events.rename(columns={"user_id": "customer", "item_id": "product"}).to_csv(
        events, index=False
    )
    items = folder / "shop_items.csv"
    catalog = demo.items.assign(categories=demo.items["categories"].map("|".join))
    catalog.rename(columns={"item_id": "product"}).to_csv(items, index=False)
    return events, items


@pytest.fixture(scope="module")
def ids_only_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A behaviour log without an item file: ids and a time only, columns named as an
    export might name them."""
    demo = generate_demo(n_users=120, n_items=60, seed=5)
    log = tmp_path_factory.mktemp("ids-only") / "visits.csv"
    demo.events[["user_id", "item_id", "timestamp"]].rename(
        columns={"user_id": "Visitor ID", "item_id": "SKU", "timestamp": "Time"}
    ).to_csv(log, index=False)
    return log


def set_fields(journey: Journey, values: dict[str, str]) -> None:
    """Type into labelled text or number inputs, one rerun each."""
    for label, value in values.items():
        field = journey.page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        journey.settle()


class Journey:
    """One browser page plus the checks made after every step."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url = page, url
        self.console_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on("response", self._on_response)

    @staticmethod
    def _benign(url: str) -> bool:
        """Streamlit's probe for its base path: opened at /data it first asks
        /data/_stcore/health and host-config, gets 404 and falls back to /."""
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        return path.count("/") >= 2 and path.endswith(("_stcore/health", "_stcore/host-config"))

    def _on_console(self, msg) -> None:
        if msg.type == "error" and not self._benign(msg.location.get("url", "")):
            self.console_errors.append(f"{msg.text} ({msg.location.get('url')})")

    def _on_response(self, response) -> None:
        if response.status >= 400 and not self._benign(response.url):
            self.console_errors.append(f"HTTP {response.status} {response.url}")

    def open(self, path: str) -> None:
        self.page.goto(f"{self.url}/{path}")
        self.settle()

    def nav(self, title: str) -> None:
        """Go to a page through the sidebar, in the same session (goto would start anew)."""
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
        self.settle()

    def settle(self, timeout: float = 60) -> None:
        """Wait until the script has finished running (no 'Running...' indicator for a
        second); fail the test when it is still running after ``timeout`` seconds."""
        page = self.page
        page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            running = page.locator('[data-testid="stStatusWidget"]').count() > 0
            if running:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 1.0:
                return
            time.sleep(0.2)
        pytest.fail(f"{page.url}: the app was still running after {timeout:.0f} s")

    def check(self, name: str) -> None:
        """Screenshot, then fail on an exception box or a console error."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        exceptions = self.page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, f"{name}: {exceptions.first.inner_text()[:2000]}"
        assert not self.console_errors, f"{name}: console errors {self.console_errors}"


@contextmanager
def chromium(url: str) -> Iterator[tuple[Any, Journey]]:
    """Headless Chromium with one page on the app: (the browser, a journey on that page)."""
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield browser, Journey(page, url)
        finally:
            browser.close()


def test_main_journey_in_a_real_browser(app_url, upload_files) -> None:
    events, items = upload_files
    with chromium(app_url) as (browser, journey):
        page = journey.page

        # A page's own URL as the very first request of a fresh server (a tab restored
        # after a restart) gets the app's navigation, not one link per file of pages/.
        journey.open("data")
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_role("link", name="Train", exact=True).wait_for(timeout=120_000)
        assert nav.get_by_role("link", name="common", exact=True).count() == 0
        page.get_by_role("heading", name="Data", exact=True).wait_for()
        journey.check("00-data-first")

        journey.open("")
        page.get_by_text("RecLens").first.wait_for()
        journey.check("01-home")

        # Upload a behaviour log and an item file, keep the suggested mapping, ingest.
        journey.open("data")
        page.get_by_role("tab", name="Upload").click()
        uploaders = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        uploaders.nth(0).set_input_files(str(events))
        journey.settle()
        uploaders.nth(1).set_input_files(str(items))
        journey.settle()
        page.get_by_role("button", name="Ingest").click()
        page.get_by_text("Loaded").first.wait_for(timeout=120_000)
        journey.settle()
        assert page.get_by_text("shop_events").count() > 0
        journey.check("02-data-ingested")

        # A long run in the background while two other browser sessions work: one
        # ingests a dataset, one reads the dashboards (and sees the run going).
        journey.open("train")
        page.get_by_text("Hyperparameters").click()
        set_fields(journey, {"Epochs": "60", "Hidden size": "32"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("· running").first.wait_for(timeout=120_000)
        uploader = Journey(browser.new_context().new_page(), app_url)
        uploader.open("data")
        uploader.page.get_by_role("tab", name="Upload").click()
        drop = uploader.page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        drop.nth(0).set_input_files(str(events))
        uploader.settle()
        set_fields(uploader, {"Dataset name": "shop_copy"})
        uploader.page.get_by_role("button", name="Ingest").click()
        reader = Journey(browser.new_context().new_page(), app_url)
        reader.open("data")
        reader.page.get_by_text("Events per user").first.wait_for()
        reader.check("03a-reader-data-while-training-and-ingesting")
        uploader.page.get_by_text("Loaded").first.wait_for(timeout=120_000)
        uploader.check("03b-uploader-ingested-while-training")
        reader.nav("Train")
        reader.page.get_by_text("· running").first.wait_for()  # the run is still going
        reader.check("03c-reader-train-page")
        for other in (uploader, reader):
            other.page.context.close()

        # Stop it (it stays resumable), then train the small model the journey uses.
        page.get_by_role("button", name="Stop", exact=True).click()
        page.get_by_text("Stopped before the end").first.wait_for(timeout=120_000)
        journey.settle()
        set_fields(journey, {"Epochs": "2"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_role("button", name="Use this model").wait_for(timeout=300_000)
        journey.check("03-train-finished")
        page.get_by_role("button", name="Use this model").click()
        journey.settle()

        # A user's interests, found by id.
        journey.nav("Interests")
        search = page.get_by_role("textbox", name="Search a user by id")
        search.fill("u00042")
        search.press("Enter")
        journey.settle()
        page.get_by_role("heading", name="User u00042").wait_for()
        journey.check("04-interests")

        # Their recommendations, each with the history items that drove it.
        journey.nav("Recommendations")
        page.get_by_role("heading", name="User u00042").wait_for()
        assert page.get_by_text("because of").count() > 0
        journey.check("05-recommendations")

        # The metrics: evaluate the model against the default baselines.
        journey.nav("Metrics")
        page.get_by_role("button", name="Run evaluation").click()
        page.get_by_text("Stored evaluation").first.wait_for(timeout=300_000)
        journey.settle()
        journey.check("06-metrics")

        # The report: built on request, downloaded, opened with the network off.
        page.get_by_role("button", name="Build the report").click()
        download_button = page.get_by_role("button", name="Download the report")
        download_button.wait_for(timeout=300_000)
        with page.expect_download() as got:
            download_button.click()
        report = SHOTS / "report.html"
        SHOTS.mkdir(parents=True, exist_ok=True)
        got.value.save_as(report)
        offline = browser.new_context(offline=True).new_page()
        failed: list[str] = []
        offline.on("requestfailed", lambda r: failed.append(r.url))
        offline.goto(report.as_uri())
        offline.get_by_role("heading", name="Evaluation").first.wait_for()
        offline.locator(".plot-container").first.wait_for()  # Plotly drew without a network
        offline.set_viewport_size({"width": 1200, "height": 4000})
        offline.screenshot(path=str(SHOTS / "07-report-offline.png"))
        assert failed == [], failed


def test_a_log_without_an_item_file_in_a_real_browser(app_url, ids_only_log) -> None:
    """Upload ids and times only, train a small model on the Train page, then read its
    interests and recommendations: every page says what it cannot show, nothing breaks."""
    with chromium(app_url) as (browser, journey):
        page = journey.page

        journey.open("data")
        page.get_by_role("tab", name="Upload").click()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(0).set_input_files(
            str(ids_only_log)
        )
        journey.settle()
        set_fields(journey, {"Dataset name": "visits"})
        page.get_by_role("button", name="Ingest").click()
        page.get_by_text("Loaded").first.wait_for(timeout=120_000)
        journey.settle()
        page.get_by_role("tab", name="Overview").click()
        empty = page.get_by_text("No categories: upload an item file")
        empty.scroll_into_view_if_needed()  # the screenshot shows what is said instead
        journey.check("10-ids-only-data")

        journey.nav("Train")
        page.get_by_text("Hyperparameters").click()
        set_fields(journey, {"Model name": "visits-tiny", "Epochs": "2", "Hidden size": "16"})
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("Saved model visits-tiny").wait_for(timeout=300_000)
        journey.settle()
        journey.check("11-ids-only-trained")

        # The only model of the dataset is the active one.
        journey.nav("Interests")
        page.get_by_role("heading", name="User u00001").wait_for()
        affinity = page.get_by_text("No category affinity: the items of this dataset have no")
        affinity.scroll_into_view_if_needed()
        assert page.get_by_text("There is no trained model").count() == 0
        journey.check("12-ids-only-interests")

        journey.nav("Recommendations")
        page.get_by_role("heading", name="User u00001").wait_for()
        assert page.get_by_text("There is no trained model").count() == 0
        journey.check("13-ids-only-recommendations")
