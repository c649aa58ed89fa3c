"""The report in a real headless Chromium (Debian's chromium, driven by Playwright)."""
import shutil
from pathlib import Path

import pytest

from evalkit.report.render import render
from report_fixtures import build as build_fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not __import__("os").environ.get("CI"),
                                reason="chromium not installed (make setup installs it)")


def test_report_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright
    out = render([build_fixture(tmp_path)], tmp_path / "report.html")
    console, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: console.append(("error", str(e))))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        xss = page.evaluate("typeof window.__xss")
        answer_text = page.inner_text("pre.answer")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        browser.close()
    assert shot.stat().st_size > 10_000
    assert [c for c in console if c[0] == "error"] == []
    assert all(u.startswith(("file://", "data:", "about:")) for u in requests), requests
    assert xss == "undefined"
    assert "<script>window.__xss=1</script>" in answer_text   # shown as text, not run
    assert {"Summary", "Leaderboard", "MT-Bench", "Contamination", "Training"} <= set(headings)
