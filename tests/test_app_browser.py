"""The explorer in a real browser: headless Chromium driven by Playwright against a local server."""

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import ablation_script, running_server

from app import evidence
from app.ui import EVIDENCE_TITLE

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
EXAMPLE_INDEX = 4  # chair_0001.off in assets/manifest.json
EXAMPLE_NAME = "chair_0001.off"
RENDER_TIMEOUT_MS = 90_000
PLOTS = ("cloud", "depth", "saliency", "token-saliency", "masks", "reconstruction", "visibility",
         "rank-chart", "chamfer-boxes", "tau-sweep")
MIN_PLOT_PX = 100
SCREENSHOT_ENV = "I2PMAE_SCREENSHOTS"
ABLATION_SEEDS = 10
ABLATION_GAINS = {"random-init": -0.08, "i2p-random": 0.0, "i2p-guided-tau1": 0.002,
                  "i2p-guided-tau0.01": 0.01}  # accuracy over the random mask's, plus seed noise


@functools.cache
def ablation_record() -> dict:
    """A 10-seed record, built by ``scripts/ablation.py`` itself: τ = 0.01 clearly ahead of the random mask,
    τ = 1 within the seed noise."""
    ablation = ablation_script()
    # (rows, seeds, metrics); every row also gets the random mask's noise: a seed is a shared start
    noise = np.random.default_rng(0).normal(0, 0.004, (len(ABLATION_GAINS), ABLATION_SEEDS, 2))
    scores = {row: {seed: {"svm_accuracy": 0.915 + gain + noise[r, seed, 0] + noise[1, seed, 0],
                           "fewshot_5way_10shot": 0.89 + gain + noise[r, seed, 1] + noise[1, seed, 1],
                           "commit": "abc1234", "command": "x", "seconds": 700}
                    for seed in range(ABLATION_SEEDS)}
              for r, (row, gain) in enumerate(ABLATION_GAINS.items())}
    return ablation.build_record(scores, epochs=10, nproc=2)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is not installed (Debian package 'chromium'; `make test` installs it)"
        if os.environ.get("CI"):  # CI must run the browser tests, never skip them
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("browser")
    record = folder / "ablation.json"
    record.write_text(json.dumps(ablation_record(), ensure_ascii=False))
    with pytest.MonkeyPatch.context() as mp, running_server(folder) as address:
        mp.setenv(evidence.EVIDENCE_ENV, str(record))  # the server runs in this process: read per page load
        yield address


@pytest.fixture(scope="module")
def browser(url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page for every test: no test relies on what another one clicked."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    page.goto(url)
    yield page
    page.close()


def _wait_for_plot(page, elem_id: str) -> None:
    page.locator(f"#{elem_id} .js-plotly-plot").first.wait_for(state="visible")


def _open_example(page) -> None:
    """Click the bundled chair in the gallery and wait until its analysis panels are drawn."""
    thumbnails = page.locator("#gallery button img")
    thumbnails.first.wait_for(state="visible")
    assert thumbnails.count() >= EXAMPLE_INDEX + 1
    thumbnails.nth(EXAMPLE_INDEX).click()
    page.locator("#summary", has_text=EXAMPLE_NAME).wait_for()
    page.locator("#mask-stats table").wait_for()


def _wait_for_renders(page) -> None:
    """The Open3D stills in their gallery, or (where Open3D cannot render) the note that says why."""
    from i2pmae.render import render_available

    if render_available()[0]:
        page.locator("#renders img").nth(4).wait_for(state="attached")
        page.locator("#renders").scroll_into_view_if_needed()  # the gallery loads its images lazily
        page.wait_for_function(  # five stills, each loaded and decoded
            "() => [...document.querySelectorAll('#renders img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length === 5")
    else:
        page.locator("#render-note", has_text="Open3D rendering").wait_for()


def _screenshot(page, name: str, element=None) -> None:
    """Keep a full-page screenshot (or one of ``element``) when ``I2PMAE_SCREENSHOTS`` names a folder (for
    people, not asserts)."""
    folder = os.environ.get(SCREENSHOT_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        if element is None:
            page.screenshot(path=str(Path(folder) / name), full_page=True)
        else:
            element.screenshot(path=str(Path(folder) / name))


def test_gallery_example_renders_every_panel(page):
    _open_example(page)
    for elem_id in PLOTS:
        _wait_for_plot(page, elem_id)
    page.locator("#reconstruction-text", has_text="Chamfer-L2").wait_for()
    page.locator("#classes", has_text="%").wait_for()
    page.locator("#classify-text", has_text="novelty score").wait_for()
    page.locator("#mesh canvas").wait_for()
    page.locator("#surface-guided canvas").wait_for()
    page.locator("#surface-text", has_text="triangles").wait_for()
    _wait_for_renders(page)
    masks = page.locator("#masks .js-plotly-plot").first
    assert masks.bounding_box()["height"] > MIN_PLOT_PX  # drawn, not an empty frame
    _screenshot(page, "explorer.png")


def test_tau_slider_redraws_the_guided_mask(page):
    _open_example(page)
    stats = page.locator("#mask-stats")
    assert "τ = 0.001)" in stats.inner_text()  # the page opens on the strong-guidance preset
    before = stats.inner_text()
    slider = page.locator("#tau input[type=range]")
    slider.fill("-5")  # the knob to the left end, then let go of it
    slider.dispatch_event("pointerup")
    page.locator("#mask-stats", has_text="τ = 1e-05").wait_for()
    assert stats.inner_text() != before
    _screenshot(page, "tau.png")


def test_presets_switch_between_the_paper_and_strong_guidance(page):
    _open_example(page)
    numbers = page.locator("#guidance-numbers")
    numbers.locator("table", has_text="τ = 0.001").wait_for()
    page.locator("#tau-preset label", has_text="paper").click()
    page.locator("#mask-stats", has_text="τ = 1)").wait_for()
    numbers.locator("table", has_text="τ = 1)").wait_for()
    assert page.locator("#tau input[type=number]").input_value() == "0"
    _wait_for_plot(page, "tau-sweep")
    _screenshot(page, "paper-preset.png")


def test_bad_upload_shows_a_readable_error_and_the_page_keeps_working(page, tmp_path):
    junk = tmp_path / "junk.ply"
    junk.write_bytes(bytes(range(256)) * 16)
    page.locator("#shape-file input[type=file]").set_input_files(str(junk))
    toast = page.locator(".toast-body", has_text="junk.ply").first
    toast.wait_for()
    message = toast.inner_text()
    assert "Traceback" not in message and "Exception" not in message
    _screenshot(page, "error.png")
    _open_example(page)  # the same page still analyses a good shape afterwards


def test_evidence_panel_shows_the_ablation_record(page):
    record, panel = ablation_record(), page.locator("#evidence")
    panel.get_by_text(EVIDENCE_TITLE).wait_for()  # rendered on page load, no shape needed
    text = page.locator("#evidence-text")
    text.locator("strong", has_text="What is only suggested").wait_for()
    said = evidence.sentences(record)
    assert said["shown"] in text.inner_text() and said["suggested"] in text.inner_text()
    assert "τ = 0.01" in said["shown"] and "τ = 1 " in said["suggested"]  # what the record was built to say
    rows = page.locator("#evidence-table table").first.locator("tbody tr")
    assert rows.count() == len(record["rows"])
    _wait_for_plot(page, "evidence-plot")
    plot = page.locator("#evidence-plot .js-plotly-plot").first
    assert plot.bounding_box()["height"] > MIN_PLOT_PX
    seeds = len(record["seeds"]) * (len(record["rows"]) + len(record["differences"]))
    means = len(record["rows"]) + len(record["differences"])
    assert plot.locator(".scatterlayer path.point").count() == 2 * (seeds + means)  # both metrics
    _screenshot(page, "evidence.png", panel)
