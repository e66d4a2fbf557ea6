"""The server's page in a real headless browser (Debian's chromium, driven by Playwright): type a sentence, click
Translate, read the translation and the attention heatmap.

Playwright cannot download its own browser here, so it launches the system's chromium (.ci/run installs it). The
test skips only where no chromium is found outside CI; in CI (CI set) a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

from seq2seq.serving import Limits

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium", "/usr/lib/chromium/chromium")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


def need(what: str) -> None:
    message = f"{what} not found: apt-get install -y chromium; pip install playwright"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run the browser test)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def page_url(toy_run):
    import fastapi  # noqa: F401 - the serve extra, in dev

    from seq2seq.serve import create_app, serve_in_thread
    from seq2seq.translator import Translator

    translator = Translator.from_run(toy_run, device="cpu")
    with serve_in_thread(create_app({"toy": translator}, Limits(), beam=5)) as url:
        yield url, translator


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        need("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])  # fmt: skip
        yield browser
        browser.close()


def test_typing_a_sentence_and_clicking_translate_shows_the_french(page_url, browser):
    url, translator = page_url
    page = browser.new_page()
    try:
        page.goto(url + "/", timeout=30_000)
        page.wait_for_function("document.getElementById('model').textContent.includes('toy')", timeout=30_000)
        page.fill("#source", "sa sb sc sd .\nst sk .")
        page.check("#attention")
        page.click("#translate")
        page.wait_for_function("document.getElementById('translation').textContent.length > 0", timeout=30_000)
        shown = page.inner_text("#translation").splitlines()
        assert shown == translator.translate(["sa sb sc sd .", "st sk ."], beam=5)
        tables = page.locator("table.heatmap")
        assert tables.count() == 2
        rows = tables.first.locator("tr").count()  # a header row, then a row per output piece and the end
        pieces = translator.translate_n_best(["sa sb sc sd ."], 5, 1)[0][0].tgt_pieces
        assert rows == 1 + len(pieces) + 1
        assert page.inner_text("#error") == ""
    finally:
        page.close()


def test_the_page_shows_the_servers_error(page_url, browser):
    url, _ = page_url
    page = browser.new_page()
    try:
        page.goto(url + "/", timeout=30_000)
        page.fill("#source", "sa .")
        page.fill("#beam", "99")
        page.click("#translate")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
        assert "beam must be from 1 to 16" in page.inner_text("#error")
    finally:
        page.close()
