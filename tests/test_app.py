"""examples/app.py in a real browser: headless Chromium from the system's packages, driven by Playwright, against the
page served on localhost for a tiny classifier, segmentation and pre-training folder. Real radiographs from
../shared/data (a PNG and a DICOM) go through the upload; an unreadable file must give the page's message. Each step
saves a screenshot, listed at the end of the test run."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SCREENSHOTS, save_tiny_folder, shared_path


pytest.importorskip("gradio", reason="the demo page needs gradio: pip install \"mrm-hf[app]\"")
pytest.importorskip("captum", reason="the demo page's why-heatmaps need captum: pip install \"mrm-hf[app]\"")
pytest.importorskip("pydicom", reason="the DICOM upload needs pydicom: pip install \"mrm-hf[dicom]\"")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
sync_playwright, PlaywrightTimeoutError = playwright_api.sync_playwright, playwright_api.TimeoutError
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("the browser test needs Chromium from the system's packages (apt-get install chromium); .ci/run "
                "installs it", allow_module_level=True)

LABELS = ["Atelectasis", "Effusion", "Pneumothorax"]
# As the machine's own Chromium runs headless here: no sandbox as root, and no background connections to Google.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(folder: Path, log: Path):
    """examples/app.py on a free localhost port, once the page answers; the caller stops the process."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "examples" / "app.py"), "--model", str(folder),
                                "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"examples/app.py stopped ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError(f"examples/app.py did not answer at {url} within 180 s:\n{log.read_text()}")


@contextlib.contextmanager
def served(browser, tmp_path: Path, kind: str):
    """examples/app.py serving a tiny folder of `kind` (conftest's `save_tiny_folder`), and a browser page to open it
    in: (page, url, server process), both closed afterwards."""
    process, url = serve(save_tiny_folder(tmp_path / kind, kind, LABELS), tmp_path / "app.log")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        yield page, url, process
    finally:
        page.close()
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def run_upload(page, url: str, path: Path, screenshot: Path, wait_for: str):
    """Open the page, upload one file, press Run, wait until `wait_for` holds, and save a screenshot."""
    # A page still wiring its components can drop an upload (seen once, on a loaded machine): open it again and
    # upload again, up to three times, before failing.
    for attempt in range(3):
        page.goto(url)
        page.locator("#run").wait_for(timeout=60_000)
        page.locator("#upload input[type=file]").set_input_files(str(path))
        try:
            page.locator("#upload").get_by_text(path.name).first.wait_for(timeout=30_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    page.locator("#run").click()
    page.wait_for_function(wait_for, timeout=120_000)
    page.screenshot(path=str(screenshot), full_page=True)
    SCREENSHOTS.append(screenshot)


def table_rows(page, headers: list[str]) -> list[list[str]]:
    """The rows of the page's table, as the browser shows them (one cell a line after the header cells)."""
    lines = [line.strip() for line in page.locator("#scores").inner_text().split("\n") if line.strip()]
    body = lines[lines.index(headers[-1]) + 1 :]
    return [body[start : start + len(headers)] for start in range(0, len(body), len(headers))]


def message(page) -> str:
    return page.locator("#message").inner_text()


def test_classifier_page_scores_a_png_and_a_dicom_and_names_an_unreadable_file(tmp_path, browser):
    png = sorted(shared_path("data", "covid", "images").glob("*.png"))[0]
    dicom = sorted(shared_path("data", "dicom").glob("*.dcm"))[0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with served(browser, tmp_path, "classifier") as (page, url, process):
        # Scores appear sorted, highest first, and the why-figure shows.
        scores_shown = ("document.querySelector('#scores') && document.querySelector('#scores').innerText"
                        ".includes('{}') && document.querySelector('#figure img')")
        for upload in (png, dicom):
            run_upload(page, url, upload, tmp_path / f"classifier-{upload.suffix[1:]}.png",
                       f"{scores_shown.format(LABELS[0])} && document.querySelector('#message').innerText"
                       f".includes('{upload.name}')")
            assert "3 findings scored" in message(page)
            rows = table_rows(page, ["finding", "score"])
            assert sorted(row[0] for row in rows) == sorted(LABELS), rows
            scores = [float(row[-1]) for row in rows]
            assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1, rows
            assert page.locator("#image img").count() == 1  # the radiograph as the model reads it
        run_upload(page, url, corrupt, tmp_path / "classifier-unreadable.png",
                   "document.querySelector('#message').innerText.includes('Could not read')")
        assert "corrupt.png" in message(page)
        assert process.poll() is None, "the server stopped on an unreadable upload"


def test_segmentation_page_draws_the_mask_and_its_area(tmp_path, browser):
    png = sorted(shared_path("data", "covid", "images").glob("*.png"))[0]
    with served(browser, tmp_path, "segmentation") as (page, url, process):
        run_upload(page, url, png, tmp_path / "segmentation.png",
                   "document.querySelector('#figure img') && document.querySelector('#scores tbody tr')")
        assert "mask is drawn" in message(page)
        areas = table_rows(page, ["structure", "area (px)", "area (fraction)"])
        assert len(areas) >= 1 and all(0.0 <= float(row[-1]) <= 1.0 for row in areas), areas


def test_pretraining_page_reconstructs_and_fills_the_report(tmp_path, browser):
    dicom = sorted(shared_path("data", "dicom").glob("*.dcm"))[0]
    with served(browser, tmp_path, "pretraining") as (page, url, process):
        run_upload(page, url, dicom, tmp_path / "pretraining.png",
                   "document.querySelector('#figure img') && document.querySelector('#scores tbody tr')")
        assert "reconstructed" in message(page)
        fills = table_rows(page, ["[MASK]", "word", "score"])
        assert len(fills) == 5, fills  # the top 5 words for the one [MASK]
