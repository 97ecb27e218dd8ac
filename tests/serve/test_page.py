"""The page at ``/`` in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
upload a photo, type a title, see the labels, confidence bars and the crop overlays; screenshot.

Skipped where Chromium is missing (``make test`` installs it with apt where it can). The
screenshot is written to the test's tmp folder, and to ``$FASHION_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.conftest import Server, photo, start

CHROMIUM = os.environ.get("FASHION_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FASHION_CHROMEDRIVER", "/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason=f"headless Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}); "
                              "as root: apt-get install -y chromium chromium-driver"),
]
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'fashion-sdk[serve]'")
pytest.importorskip("selenium", reason="selenium is not installed (requirements-dev.txt pins it)")


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(bundle, tmp_path_factory)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_shows_labels_bars_and_crop_overlays(server: Server, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    image = tmp_path / "dress.png"
    image.write_bytes(photo("red", (300, 220)))
    driver.get(f"http://127.0.0.1:{server.port}/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: "attributes" in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "title").send_keys("red summer dress")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "files").send_keys(str(image))  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#attributes tr[data-attribute]")))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".crops canvas")) >= 3)

    rows = driver.find_elements(By.CSS_SELECTOR, "#attributes tr[data-attribute]")  # type: ignore[attr-defined]
    assert {r.get_attribute("data-attribute") for r in rows} == {"color", "category"}
    labels = {r.get_attribute("data-attribute"): r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}
    assert labels["color"] in ("red", "blue") and labels["category"] in ("dress", "shirt", "pants")
    bars = driver.find_elements(By.CSS_SELECTOR, "#attributes .bar > span")  # type: ignore[attr-defined]
    assert bars and all(b.get_attribute("style").startswith("width:") for b in bars)

    overlays = {o.get_attribute("data-view"): o for o in driver.find_elements(By.CSS_SELECTOR, ".view-box")}  # type: ignore[attr-defined]
    assert set(overlays) == {"full", "center", "box"}
    photo_box = driver.find_element(By.CSS_SELECTOR, ".stage img").rect  # type: ignore[attr-defined]
    full, center, box = (overlays[v].rect for v in ("full", "center", "box"))
    assert abs(full["width"] - photo_box["width"]) <= 2  # the full view is the whole photo
    assert center["width"] < full["width"] and box["width"] < full["width"]
    assert "failed" not in driver.find_element(By.ID, "status").text  # type: ignore[attr-defined]

    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    if os.environ.get("FASHION_SCREENSHOT_DIR"):
        target = Path(os.environ["FASHION_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "serve-page.png")
