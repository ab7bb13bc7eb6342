"""rtatl-detect --report: one self-contained HTML page per input, checked in a real headless browser."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO

pytest.importorskip("plotly")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def pages(media, model_path, tmp_path_factory):
    from rtatl_sdk.apps.cli import main

    d = tmp_path_factory.mktemp("report")
    clip = d / "clip.mp4"
    shutil.copy(media / "noface_face.mov", clip.with_suffix(".mov"))  # frames without a face, then a face
    assert main([str(media / "single_face.jpg"), str(clip.with_suffix(".mov")), "--report", str(d / "rep"),
                 "--max-frames", "110", "--quiet", "--model", str(model_path)]) == 0
    return d / "rep"


def test_a_page_per_input_and_an_index_all_self_contained(pages, model_path):
    import html

    from rtatl_sdk.engines import OnnxEngine

    card = OnnxEngine(model_path, ["CPUExecutionProvider"]).card
    names = sorted(p.name for p in pages.iterdir())
    assert names == ["clip_report.html", "index.html", "single_face_report.html"]
    index = (pages / "index.html").read_text()
    assert "clip_report.html" in index and "single_face_report.html" in index
    for name in ("clip_report.html", "single_face_report.html"):
        text = (pages / name).read_text()
        assert "<script src=" not in text and "<link " not in text  # nothing fetched: scripts and styles inline
        assert "Plotly" in text and "Model card" in text and "Settings of this run" in text
        assert html.escape(card.provenance.training_data) in text and html.escape(card.provenance.licence) in text
    video = (pages / "clip_report.html").read_text()
    assert "no face" in video and "Strongest moment of each AU" in video and "data:image/jpeg;base64," in video
    assert "longest run" in video and "Head pose and gaze" in video


def test_a_long_archive_page_stays_light():
    from rtatl_sdk import store
    from rtatl_sdk.contract.card import ModelCard
    from rtatl_sdk.io import report
    from rtatl_sdk.results import AUResult, Box, FaceAUs, FrameResult

    card = ModelCard.from_json((store.PACKAGE_MODELS / "model.card.json").read_text())
    rep = report.VideoReport("long.mp4", card.aus, card.thresholds, card, {})
    rng = np.random.default_rng(0)
    for i in range(20_000):  # 13 minutes at 25 fps, no images kept
        aus = {a: AUResult(probability=float(p), present=bool(p > 0.5), threshold=0.5)
               for a, p in zip(card.aus, rng.random(len(card.aus)))}
        face = FaceAUs(index=0, box=Box(x=0, y=0, w=10, h=10, score=1), landmarks=np.zeros((68, 2)), aus=aus, track_id=0)
        rep.add(FrameResult(index=i, timestamp=i / 25, faces=[face] if i % 100 else []))
    tr = rep.tracks[0]
    assert len(tr.best) == 0  # thumbnails need images; none were kept
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        size = rep.write(Path(d) / "long_report.html").stat().st_size
    plotly_js = len(report.plotly()[1].get_plotlyjs())
    assert size - plotly_js < 3_000_000  # curves binned to MAX_POINTS, not 20,000 points x 12 AUs x 3 charts


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium): browser test skipped")
def test_pages_render_in_a_real_browser_without_errors_or_network(pages, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    import cv2

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        try:
            for name, min_charts in (("clip_report.html", 3), ("single_face_report.html", 1)):
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                errors, requests = [], []
                page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
                page.on("request", lambda r, q=requests: q.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
                page.goto((pages / name).as_uri())
                page.wait_for_selector("svg.main-svg", timeout=20_000)
                assert errors == [] and requests == [], (name, errors, requests)
                assert page.locator("div.plot-container").count() >= min_charts
                assert page.locator("svg.main-svg").count() >= min_charts
                text = page.inner_text("body")
                assert "AU12" in text and ("Lip Corner Puller" in text or "clip" not in name)  # the video's table names AUs
                shot = tmp_path / f"{name}.png"
                page.screenshot(path=str(shot), full_page=False)
                img = cv2.imread(str(shot))
                assert img is not None and img.std() > 20  # not blank
                page.close()
        finally:
            browser.close()


def test_docs_hold_screenshots_of_both_pages():
    for name in ("report_video.png", "report_still.png"):
        assert (REPO / "docs" / name).stat().st_size > 20_000
