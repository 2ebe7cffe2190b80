"""report.html in a real headless browser (Debian chromium + chromedriver): the tables are there,
every image decodes (complete, naturalWidth > 0), nothing is loaded from outside the file; a
screenshot goes to test-artifacts/report.png."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (tunelab[test])")
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        pytest.fail(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


def test_report_html_renders_tables_and_every_image(compare_study, browser):
    html = compare_study["dir"] / "report.html"
    text = html.read_text()
    assert "<script" not in text and 'src="http' not in text and "href=" not in text  # self-contained
    browser.get(html.as_uri())
    assert browser.title.startswith("tunelab compare")
    tables = browser.find_elements("tag name", "table")
    assert len(tables) >= 3
    # the first table is the overview matrix (test_report_first_screen...); the per-task table follows
    task_tables = [t for t in tables if "p vs full" in [th.text for th in t.find_elements("tag name", "th")]]
    assert task_tables
    headers = [th.text for th in task_tables[0].find_elements("tag name", "th")]
    assert "method" in headers and "accuracy" in headers and "p vs full" in headers
    body_rows = task_tables[0].find_elements("css selector", "tbody tr")
    assert {r.find_elements("tag name", "td")[0].text for r in body_rows} >= {"full", "lora-r4", "lora-r16"}
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight,"
        " i.getBoundingClientRect().width, i.src.slice(0, 22)]);")
    assert len(imgs) >= 2  # Pareto plot + learning curves for sst2 (one task: no critical-difference diagram)
    for alt, complete, nw, nh, shown, src in imgs:
        assert complete and nw > 0 and nh > 0 and shown > 0, f"broken image: {alt}"
        assert src == "data:image/png;base64,"
    best = browser.find_elements("css selector", "td.best")
    assert best, "no best-per-column marking"
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    browser.set_window_size(1400, max(1000, min(browser.execute_script("return document.body.scrollHeight;"), 8000)))
    assert browser.save_screenshot(str(out / "report.png"))
    assert (out / "report.png").stat().st_size > 10000


def test_report_first_screen_is_the_matrix_and_the_recommendation(compare_study, browser, tmp_path):
    """At 1400x1000 (no scrolling) the overview matrix and the recommendation paragraph are inside the
    first viewport; a screenshot of that screen is saved under tmp_path."""
    browser.set_window_size(1400, 1000)
    browser.get((compare_study["dir"] / "report.html").as_uri())
    first = browser.execute_script("""
        const vh = window.innerHeight, vw = window.innerWidth;
        const box = e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]; };
        const t = document.querySelector("table"), p = document.querySelector("p.rec");
        return {vh: vh, vw: vw, scroll: window.scrollY, table: box(t), rec: box(p), recText: p.textContent,
                heads: Array.from(t.querySelectorAll("th")).map(h => h.textContent),
                rows: Array.from(t.querySelectorAll("tbody tr")).map(r => r.cells[0].textContent)};""")
    assert first["scroll"] == 0
    assert first["heads"][:2] == ["method", "sst2: accuracy ↑"] and "train time × full FT" in first["heads"]
    assert set(first["rows"]) == {"full", "lora-r4", "lora-r16"}
    for name in ("table", "rec"):
        top, bottom, left, right = first[name]
        assert 0 <= top < bottom <= first["vh"] and 0 <= left < right <= first["vw"], (name, first[name], first["vh"])
    assert first["table"][1] <= first["rec"][0]  # the matrix, then the recommendation
    assert first["recText"].startswith("Recommendation: sst2 (accuracy ↑): best mean ")
    shot = tmp_path / "first-screen.png"
    assert browser.save_screenshot(str(shot))
    from PIL import Image

    with Image.open(shot) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.size[1] >= first["vh"] and hi - lo > 100  # a rendered page, not blank
