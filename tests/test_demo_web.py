"""make demo's web page in a real browser: Debian's chromium driven by Playwright, through the
page's stable hooks (data-instance, data-role, data-term, data-action). On the Raft backend
(the fastest to fail over) with a local stand-in for Open-Meteo, so that the leader writes every
second: one leader; kill -9 it from the page and a new one leads in a higher term within the
failover time; pause a leader and see its late write refused by the fencing check.

Without chromium the test is skipped, except in CI (CI set; .ci/run installs chromium), where it
must run. WEB_VIEW_SCREENSHOT=path saves the page once it has shown all that (docs/web-view.png
was made so)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fake_open_meteo import FakeOpenMeteo
from harness.processes import ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Raft's default election timeout is 1-2 s: a kill is noticed within 2 s and a new leader elected
# within a round trip or two (tests/test_wheel.py allows 5 s); more for 2 busy cores.
FAILOVER_BOUND = 10.0
PAUSE = 4  # seconds the leader stays frozen: past its 1 s lease, so that another leads meanwhile

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)", allow_module_level=True)


@pytest.fixture
def demo_url(open_meteo: FakeOpenMeteo) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "AZURE_", "DEMO_", "RAFT_"))}
    env.update(open_meteo.env(), ELECTION_BACKEND="raft", DEMO_FAILOVER_EVERY="0", FETCH_INTERVAL="1",
               READ_INTERVAL="1", WEATHER_CITIES="Hanoi,Tokyo,London", PYTHONPATH=str(ROOT / "src"))
    process = subprocess.Popen([sys.executable, "-m", "distributed_mutex_demo.demo"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "http://127.0.0.1:" in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert found.wait(30), "the demo printed no URL within 30 s:\n" + "".join(lines[-20:])
        match = next(m for line in lines if (m := re.search(r"the web view is at (http://127\.0\.0\.1:\d+/)$", line.strip())))
        yield match[1]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, "".join(lines[-30:])
    assert "Traceback" not in "".join(lines), "".join(lines[-60:])


def test_the_page_shows_one_leader_a_kill_fails_over_and_a_paused_leaders_write_is_refused(demo_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(demo_url)
            leaders = page.locator('[data-instance][data-role="leader"]')
            expect(leaders).to_have_count(1, timeout=30_000)
            expect(page.locator("[data-instance]")).to_have_count(3)
            first, term = leaders.get_attribute("data-instance"), int(leaders.get_attribute("data-term") or 0)
            assert term >= 1

            # kill -9 the leader: a new one, in a higher term, within the failover time.
            clicked = time.monotonic()
            page.click('[data-action="kill-leader"]')
            page.wait_for_function(
                """([first, term]) => {
                    const l = document.querySelectorAll('[data-instance][data-role="leader"]');
                    return l.length === 1 && l[0].dataset.instance !== first && Number(l[0].dataset.term) > term;
                }""", arg=[first, term], timeout=FAILOVER_BOUND * 1000)
            took = time.monotonic() - clicked
            assert took <= FAILOVER_BOUND, took
            expect(page.locator(f'[data-instance="{first}"]')).to_have_attribute("data-role", "stopped")
            expect(page.locator('#timeline li[data-event="action"][data-kind="kill"]')).to_contain_text("led (term")

            # Pause the new leader: frozen while its write waits for the database, it wakes after
            # another has taken over, and the store refuses its write as stale.
            paused = leaders.get_attribute("data-instance")
            paused_term = int(leaders.get_attribute("data-term") or 0)
            page.fill("#seconds", str(PAUSE))
            page.click('[data-action="pause-leader"]')
            refused = page.locator(f'#timeline li[data-event="refused"][data-target="{paused}"]')
            expect(refused).to_have_count(1, timeout=(PAUSE + 15) * 1000)
            expect(refused).to_contain_text(f"its term {paused_term}")
            expect(leaders).to_have_count(1)
            assert int(leaders.get_attribute("data-term") or 0) > paused_term
            expect(page.locator(f'[data-instance="{paused}"]')).to_have_attribute("data-role", "worker")

            # The add button is disabled on Raft, with the reason.
            add = page.locator('[data-action="add-instance"]')
            expect(add).to_be_disabled()
            expect(add).to_have_attribute("title", re.compile("membership change"))

            # Vietnamese: the explanation and the labels switch.
            page.click('[data-lang="vi"]')
            expect(page.locator('[data-lang-block="vi"]')).to_be_visible()
            expect(page.locator('[data-action="kill-leader"]')).to_have_text("kill -9 leader")
            page.click('[data-lang="en"]')
            if target := os.environ.get("WEB_VIEW_SCREENSHOT"):
                page.screenshot(path=target, full_page=True)
        finally:
            browser.close()
