"""The default model shipped in rtatl_sdk/models (trained by training/recipes/default_model.py)."""

import json

import numpy as np
import pytest

from rtatl_sdk import store

pytestmark = pytest.mark.media
SHIPPED = store.PACKAGE_MODELS / "model.onnx"


@pytest.fixture(scope="module")
def default_det():
    import os

    from rtatl_sdk import AUDetector

    if os.environ.get("RTATL_MODEL"):
        pytest.skip("$RTATL_MODEL overrides the default model")
    d = AUDetector()
    yield d
    d.close()


def test_default_model_ships_with_an_honest_card(default_det):
    assert SHIPPED.is_file()
    total = sum(p.stat().st_size for p in store.PACKAGE_MODELS.glob("*.onnx"))
    assert total < 80e6
    card = default_det.card
    assert "not trained or evaluated on BP4D/DISFA" in card.provenance.training_data
    assert "blendshape teacher" in card.provenance.notes
    for key in ("f1_teacher_heldout_mean", "f1_edits_heldout_mean", "au12_margin_heldout"):
        assert key in card.metrics
    on_cpu = "CUDAExecutionProvider" not in default_det.engine.providers
    if on_cpu and (store.PACKAGE_MODELS / "model.int8.onnx").is_file():
        assert default_det.model_path.name == "model.int8.onnx"  # int8 on CPU: it passed the 98 % agreement check


def test_card_numbers_match_the_recipe_log():
    from export.api import read_card

    card = read_card(SHIPPED)
    log = json.loads((store.PACKAGE_MODELS / "recipe_metrics.json").read_text())
    assert card.metrics["f1_teacher_heldout_mean"] == log["teacher_heldout_mean"]
    assert card.metrics["f1_edits_heldout_mean"] == log["edits_heldout_mean"]
    assert card.metrics["au12_margin_heldout"] == log["au12_margin"]


def test_smile_on_the_held_out_identity(default_det, media):
    (face,) = default_det.detect(media / "single_face.jpg")
    assert face.aus["AU12"].present
    frames = list(default_det.detect_video(media / "single_face.mp4"))
    p12 = np.array([f.faces[0].aus["AU12"].probability for f in frames])
    neutral, smiling = p12[:18].mean(), p12[24:].mean()
    assert smiling - neutral > 0.15, (neutral, smiling)  # measured: 0.22 (fp32), see the card
