"""Load test: page-ready latency of the running app with N concurrent browser sessions.

    .venv/bin/python bench/load.py [--sessions 1,5,20] [--rounds 2] [--chromium PATH]

Starts the app (``streamlit run app.py`` on localhost, a fresh database in a temporary
folder, seeded with the demo dataset on first start, ``RECLENS_AUTOTRAIN=0``), then
for each N opens N pages at once in one headless Chromium (one browser context per
session, so each is its own Streamlit session) and times each from ``goto`` until the
page is ready: the Home page with its dataset metrics, or the Data page with its
overview metrics and all five charts, and no "running" indicator. Each N is measured
``--rounds`` times (fresh contexts each round) after one warm-up session.

Prints one JSON object on stdout (latencies in seconds: median, p95 and max over all
sessions of all rounds); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, code_state, loadavg, log, machine  # noqa: E402  (bench/common.py)

MEASURED_CODE = ("app.py", "ui/common.py", "ui/pages/home.py", "ui/pages/data.py", "core/store/")

READY = {
    # page path -> JS condition for "rendered": content present, no running indicator.
    "": """() => document.querySelectorAll('[data-testid="stMetric"]').length >= 2
              && !document.querySelector('[data-testid="stStatusWidget"]')""",
    "data": """() => document.querySelectorAll('[data-testid="stMetric"]').length >= 6
              && document.querySelectorAll('[data-testid="stPlotlyChart"]').length >= 5
              && !document.querySelector('[data-testid="stStatusWidget"]')""",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "RECLENS_DB": str(home / "reclens.duckdb"),
        "RECLENS_AUTOTRAIN": "0",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true"]
        + [f"--server.port={port}", "--server.address=127.0.0.1"]
        + ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        cwd=ROOT,
        env=env,
        stdout=open(home / "server.log", "wb"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return server, url
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the app did not start:\n" + (home / "server.log").read_text()[-3000:])
        time.sleep(0.5)


async def one_session(browser, url: str, path: str, timeout_s: float) -> float:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        started = time.perf_counter()
        await page.goto(f"{url}/{path}", timeout=timeout_s * 1000)
        await page.wait_for_function(READY[path], polling=50, timeout=timeout_s * 1000)
        return time.perf_counter() - started
    finally:
        await context.close()


async def measure(url: str, chromium: str, sessions: list[int], rounds: int) -> dict:
    from playwright.async_api import async_playwright

    results: dict = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for path in READY:  # warm-up: first start seeds the demo, caches fill
            await one_session(browser, url, path, 300)
        for path in READY:
            page_name = path or "home"
            for n in sessions:
                times: list[float] = []
                for r in range(rounds):
                    log(f"{page_name}: {n} sessions, round {r + 1}/{rounds}")
                    times += await asyncio.gather(
                        *(one_session(browser, url, path, 300) for _ in range(n))
                    )
                times.sort()
                results.setdefault(page_name, {})[str(n)] = {
                    "sessions": n,
                    "samples": len(times),
                    "median_s": round(statistics.median(times), 3),
                    "p95_s": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
                    "max_s": round(times[-1], 3),
                    "min_s": round(times[0], 3),
                }
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,5,20")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--chromium",
        default=os.environ.get("RECLENS_CHROMIUM")
        or shutil.which("chromium")
        or "/usr/bin/chromium",
    )
    args = parser.parse_args()
    sessions = [int(n) for n in args.sessions.split(",")]
    home = Path(tempfile.mkdtemp(prefix="reclens-load-"))
    load_start = loadavg(all_three=True)
    server, url = start_app(home)
    try:
        log(f"app on {url}")
        results = asyncio.run(measure(url, args.chromium, sessions, args.rounds))
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "load",
                "what": "page-ready latency, N concurrent browser sessions (one Chromium)",
                "rounds": args.rounds,
                "results": results,
                "loadavg_start": load_start,
                "loadavg_end": loadavg(all_three=True),
                "machine": machine(chromium=args.chromium),
                "code": code_state(MEASURED_CODE),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
