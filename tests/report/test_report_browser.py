"""The page in a real headless Chromium, from file://, with networking off.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and ``selenium``. The driver path is given explicitly so Selenium
Manager never tries to download a driver.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from explorer.report import build_report, collect, make_figures
from explorer.results import load_results

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Anything else is a network request (Chromium's own chrome:// pages are internal).
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:", "chrome:", "chrome-untrusted:")
# Installed before any page script runs: records uncaught errors, failed resource loads,
# unhandled promise rejections, and any alert() an injected string might trigger.
HOOKS = """
window.__errors = []; window.__alerts = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push(e.message ? e.message + ' @' + e.filename + ':' + e.lineno
                                 : 'failed to load ' + (t.src || t.href));
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__errors.push('unhandled rejection: ' + e.reason);
});
window.alert = window.confirm = window.prompt = function (m) { window.__alerts.push(String(m)); };
"""
PLOTS = """
return Array.from(document.querySelectorAll('div.plot')).map(function (d) {
  var r = d.getBoundingClientRect();
  return {key: d.dataset.key, svgs: d.querySelectorAll('.main-svg').length,
          width: r.width, height: r.height, layout: !!d._fullLayout};
});
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("Chromium is not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",  # WebGL: parcoords
                 "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    d.set_page_load_timeout(60)
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS})
    yield d
    d.quit()


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.mark.parametrize("variant", [dict(hostile=True), dict(with_test=False)],
                         ids=["hostile-strings", "no-test-split"])
def test_page_renders_every_figure_offline_without_errors(driver, make_store, tmp_path, variant):
    from selenium.webdriver.support.ui import WebDriverWait

    store = make_store(**variant)
    index = build_report(store, tmp_path / "out", n_resamples=50)
    n_figures = len(make_figures(collect(load_results(store), n_resamples=50)))
    driver.get_log("browser"), driver.get_log("performance")  # drop the previous page's
    driver.get(index.as_uri())

    def rendered(d):
        plots = d.execute_script(PLOTS)
        return plots if plots and all(p["svgs"] > 0 for p in plots) else False

    plots = WebDriverWait(driver, 60).until(rendered)
    assert len(plots) == n_figures >= 8
    for p in plots:
        assert p["layout"] and p["width"] > 100 and p["height"] > 100, p
    assert driver.execute_script("return window.__errors") == []
    assert driver.execute_script("return window.__alerts") == []
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    requests = _requests(driver)
    assert requests and all(u.startswith(LOCAL_SCHEMES) for u in requests), requests
    assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert driver.execute_script("return document.querySelectorAll('main h2').length") == 9
