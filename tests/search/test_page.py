"""The page of `fashion serve --index` in headless Chromium: upload a photo, see the similar
products with their catalog thumbnails (skipped where Chromium is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.search.conftest import photo_manifest
from tests.serve.conftest import bundle, start  # noqa: F401 - the bundle fixture
from tests.serve.test_page import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 - the browser fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="headless Chromium is not installed"),
]


def test_page_shows_similar_products(bundle: Path, tiny: object, browser: object,  # noqa: F811
                                     tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fashion import Predictor
    from fashion.search import Index, run_embed

    run_embed(Predictor.from_pretrained(bundle, device="cpu"),
              photo_manifest(tmp_path / "photos", n=10), tmp_path / "v.parquet")
    Index.build([tmp_path / "v.parquet"]).save(tmp_path / "ix")
    server = start(bundle, tmp_path_factory, "--index", str(tmp_path / "ix"))
    try:
        driver = browser
        driver.get(f"http://127.0.0.1:{server.port}/")  # type: ignore[attr-defined]
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "attributes" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "title").send_keys("red dress 4")  # type: ignore[attr-defined]
        driver.find_element(By.ID, "files").send_keys(str(tmp_path / "photos" / "4.png"))  # type: ignore[attr-defined]
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar figure.similar")) == 8)
        cards = driver.find_elements(By.CSS_SELECTOR, "#similar figure.similar")  # type: ignore[attr-defined]
        assert cards[0].get_attribute("data-id") == "p4"
        wait.until(lambda d: all(i.get_property("naturalWidth") > 0
                                 for i in d.find_elements(By.CSS_SELECTOR, "#similar img")))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#similar img")) == 8  # type: ignore[attr-defined]
    finally:
        server.stop()
