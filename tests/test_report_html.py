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
    headers = [th.text for th in tables[0].find_elements("tag name", "th")]
    assert "method" in headers and "accuracy" in headers and "p vs full" in headers
    body_rows = tables[0].find_elements("css selector", "tbody tr")
    assert {r.find_elements("tag name", "td")[0].text for r in body_rows} >= {"full", "lora-r4", "lora-r16"}
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight,"
        " i.getBoundingClientRect().width, i.src.slice(0, 22)]);")
    assert len(imgs) >= 2  # Pareto plot + learning curves for sst2
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
