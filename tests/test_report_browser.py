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
        # no table cell's content is wider than its column (it would spill or force a scroll)
        overflowing = page.evaluate("""[...document.querySelectorAll('td, th')]
            .filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.trim().slice(0, 60))""")
        # a leaderboard cell holds value ± stderr and the delta: two lines at most, not 3-4 wrapped ones
        tall_cells = page.evaluate("""[...document.querySelectorAll('table.leaderboard tbody td')].filter(c => {
            const r = document.createRange(); r.selectNodeContents(c);
            const bottoms = [...r.getClientRects()].map(x => x.bottom).sort((a, b) => a - b);
            const lines = bottoms.filter((b, i) => i === 0 || b - bottoms[i - 1] > 6).length;   // one per line box
            return lines > 2; }).map(c => c.textContent.replace(/\\s+/g, ' ').trim())""")
        # no chart legend sits over a plotting area (an axes' background patch) of its figure
        legends_over_axes = page.evaluate("""[...document.querySelectorAll('svg')].flatMap(svg => {
            const legends = [...svg.querySelectorAll('g[id^="legend"]')].map(g => g.getBoundingClientRect());
            const axes = [...svg.querySelectorAll('g[id^="axes"]')]
                .map(a => a.querySelector('g[id^="patch"] path')).filter(Boolean).map(p => p.getBoundingClientRect());
            const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
            return legends.flatMap(l => axes.filter(a => hit(l, a)).map(a => [l.left, l.top, a.left, a.top]));
        })""")
        n_legends = page.evaluate("document.querySelectorAll('svg g[id^=\"legend\"]').length")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        xss = page.evaluate("typeof window.__xss")
        answer_text = page.inner_text("pre.answer")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        toc = page.eval_on_selector_all("nav.toc a", "els => els.map(e => e.getAttribute('href'))")
        # sorting: the leaderboard by its average column, up then down
        first_col = "els => els.map(r => r.cells[0].textContent.trim().split(' ')[0])"
        before = page.eval_on_selector_all("table.leaderboard tbody tr", first_col)
        avg = page.locator("table.leaderboard thead th").last
        avg.click()
        ascending = page.eval_on_selector_all("table.leaderboard tbody tr", first_col)
        avg.click()
        descending = page.eval_on_selector_all("table.leaderboard tbody tr", first_col)
        sort_state = avg.get_attribute("aria-sort")
        n_errors_before = len([c for c in console if c[0] == "error"])
        # markup injected after load still cannot run: the CSP allows only the sort script's hash
        page.evaluate("""document.body.insertAdjacentHTML('beforeend',
            '<img src=x onerror="window.__xss=3"><a id=j href="javascript:window.__xss=4">j</a>');
            const s = document.createElement('script'); s.textContent = 'window.__xss=5';
            document.body.appendChild(s);""")
        page.click("#j")
        page.wait_for_timeout(300)
        xss_injected = page.evaluate("typeof window.__xss")
        browser.close()
    assert n_errors_before == 0, console
    assert overflowing == [], overflowing
    assert tall_cells == [], tall_cells
    assert n_legends >= 3 and legends_over_axes == [], legends_over_axes
    assert before == ["base", "dpo", "dpop"] and ascending == ["base", "dpop", "dpo"], (before, ascending)
    assert descending == ["dpo", "dpop", "base"] and sort_state == "descending"
    assert xss_injected == "undefined"
    assert toc[:3] == ["#summary", "#leaderboard", "#mtbench"] and "#glossary" in toc
    assert shot.stat().st_size > 10_000
    assert all(u.startswith(("file://", "data:", "about:")) for u in requests), requests
    assert xss == "undefined"
    assert "<script>window.__xss=1</script>" in answer_text   # shown as text, not run
    assert {"Summary", "Leaderboard", "MT-Bench", "Contamination", "Training"} <= set(headings)
