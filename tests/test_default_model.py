"""The default model shipped in rtatl_sdk/models (trained by training/recipes/default_model.py)."""

import json

import numpy as np
import pytest

from rtatl_sdk import store

pytestmark = pytest.mark.media
SHIPPED = store.PACKAGE_MODELS / "model.onnx"
# measured with the shipped int8 model (the light graph): AU12 0.02 on the neutral frames 0-17 of
# single_face.mp4, 0.96 on the smiling frames 24-71; no AU present on his neutral frames (v2 alike;
# v1: 2.7, AU01, AU02, AU23)
MARGIN, NEUTRAL_PRESENT = 0.6, 1.0
REPORT = store.PACKAGE_MODELS / "recipe_report.json"


def test_default_model_ships_with_an_honest_card(default_det):
    assert SHIPPED.is_file()
    total = sum(p.stat().st_size for p in store.PACKAGE_MODELS.glob("*.onnx"))
    assert total < 70e6  # the light graph: fp32 51 MB + int8 13 MB for 18 AUs with the intensity head
    card = default_det.card
    assert "Not BP4D/DISFA" in card.provenance.training_data
    assert "Research use only" in card.provenance.notes and "blendshape teacher" in card.provenance.notes
    assert card.provenance.licence.startswith("research use only")
    for key in ("val_auc_mean", "teacher_val_auc_mean", "val_neutral_present", "teacher_val_neutral_present",
                "val_f1_vs_teacher_mean", "val_faces", "val_people"):
        assert key in card.metrics, key
    assert len(set(card.thresholds)) > 3  # fitted per AU on the validation people, not 0.5 everywhere
    on_cpu = "CUDAExecutionProvider" not in default_det.engine.providers
    if on_cpu and (store.PACKAGE_MODELS / "model.int8.onnx").is_file():
        assert default_det.model_path.name == "model.int8.onnx"  # int8 on CPU: it passed the 98 % agreement check


def test_the_card_lists_openface_aus_with_thresholds_and_says_what_the_intensity_scale_is(default_det):
    from rtatl_sdk.contract.au import AU_SETS

    card = default_det.card
    assert card.aus == [f"AU{a:02d}" for a in AU_SETS["OPENFACE"]] and len(card.thresholds) == 18
    assert all(0.0 < t < 1.0 for t in card.thresholds)
    assert "intensity" in card.outputs and "blendshape" in card.intensity_scale and "not FACS" in card.intensity_scale
    assert "1.5% per AU (6% for AU06, AU12)" in card.provenance.notes  # the stated neutral rates


def test_validation_report_has_the_openface_contrasts_and_intensity_per_au():
    val = json.loads(REPORT.read_text())["validation"]
    s = val["student"]
    for k in ("AU25 surprise>neutral", "AU26 surprise>neutral", "AU05 surprise>neutral"):
        assert k in s["contrasts"], k
    assert s["contrasts"]["AU25 surprise>neutral"]["auc"] > 0.8 and s["contrasts"]["AU26 surprise>neutral"]["auc"] > 0.8
    assert len(s["intensity_pearson_vs_teacher"]) == 18 and s["intensity_pearson_vs_teacher"]["AU12"] > 0.8
    assert s["edit_contrasts"]["AU09"]["share_rising"] > 0.9  # the validation people's nose-wrinkle edits
    chosen = val["tradeoff"]["rows"][-1]
    assert chosen["neutral_rate"].startswith("the card's") and chosen["neutral_present"] < 1 / 3  # held-apart people
    assert chosen["present_on_happy"]["AU12"] > 0.75


def test_card_numbers_match_the_recipe_report():
    from export.api import read_card

    card = read_card(SHIPPED)
    report = json.loads(REPORT.read_text())
    val = report["validation"]
    assert card.thresholds == pytest.approx(val["thresholds"])
    assert card.metrics["val_auc_mean"] == val["student"]["auc_mean"]
    assert card.metrics["teacher_val_auc_mean"] == val["teacher"]["auc_mean"]
    assert card.metrics["val_neutral_present"] == val["student"]["neutral_present"]


def test_validation_people_beat_the_teacher_where_it_is_weak():
    val = json.loads(REPORT.read_text())["validation"]
    s, t = val["student"], val["teacher"]
    assert s["auc_mean"] > t["auc_mean"]
    assert s["contrasts"]["AU06 happiness>neutral"]["auc"] > t["contrasts"]["AU06 happiness>neutral"]["auc"]
    assert s["rise"]["AU06"]["share_rising"] > t["rise"]["AU06"]["share_rising"]
    assert s["neutral_present"] < 0.5


def test_astronaut_smiles_without_a_frown(default_det):
    skimage_data = pytest.importorskip("skimage.data")
    (face,) = default_det.detect(skimage_data.astronaut(), colour="rgb")
    assert face.aus["AU12"].present and face.aus["AU06"].present, face.probabilities()
    assert face.aus["AU04"].present is False, face.probabilities()


def test_smile_on_the_held_out_identity(default_det, media):
    (face,) = default_det.detect(media / "single_face.jpg")
    assert face.aus["AU12"].present
    frames = list(default_det.detect_video(media / "single_face.mp4"))
    p12 = np.array([f.faces[0].aus["AU12"].probability for f in frames])
    neutral, smiling = p12[:18].mean(), p12[24:].mean()
    assert smiling - neutral > MARGIN, (neutral, smiling)
    present = [sum(bool(r.present) for r in f.faces[0].aus.values()) for f in frames[:18]]
    assert np.mean(present) <= NEUTRAL_PRESENT, present


def test_the_default_is_the_lighter_graph_on_the_same_contract(default_det):
    """The default model's graph resizes the 192-px crop to 128 px itself (``model.work_size``):
    the card's input and the SDK's crop are the full-size graph's."""
    card = default_det.card
    assert card.input_size == 192 and "resized to 128 px" in card.provenance.notes
    assert store.au_model_path("light") == store.PACKAGE_MODELS / "model.int8.onnx"  # its name as an option


V2 = store.PACKAGE_MODELS / "v2" / "model.int8.onnx"


@pytest.fixture(scope="module")
def v2_det():
    from rtatl_sdk import AUDetector

    d = AUDetector("v2")
    yield d
    d.close()


def test_the_earlier_default_ships_as_v2_with_its_own_card_and_validation_table(v2_det, default_det):
    """``AUDetector("v2")``: the full-size graph, same AUs, contract and validation people as the
    default, its own thresholds and held-out numbers."""
    from export.api import read_card

    card = v2_det.card
    assert v2_det.model_path == V2 and card.aus == default_det.card.aus and card.input_size == default_det.card.input_size
    assert "resized" not in card.provenance.notes and "Research use only" in card.provenance.notes
    val = json.loads((V2.parent / "recipe_report.json").read_text())["validation"]
    assert card.thresholds == pytest.approx(val["thresholds"]) and read_card(V2).metrics == card.metrics
    assert card.metrics["val_people"] == default_det.card.metrics["val_people"]  # the same validation people
    assert val["student"]["auc_mean"] > val["teacher"]["auc_mean"] and val["student"]["neutral_present"] < 1 / 3
    chosen = val["tradeoff"]["rows"][-1]  # held-apart people: 0.29 AUs per neutral face (the default: 0.28)
    assert chosen["neutral_rate"].startswith("the card's") and chosen["neutral_present"] < 1 / 3
    assert chosen["present_on_happy"]["AU12"] > 0.75


def test_the_v2_model_on_the_held_out_identity(v2_det, media):
    frames = list(v2_det.detect_video(media / "single_face.mp4"))
    p12 = np.array([f.faces[0].aus["AU12"].probability for f in frames])
    assert p12[24:].mean() - p12[:18].mean() > MARGIN, (p12[:18].mean(), p12[24:].mean())
    present = [sum(bool(r.present) for r in f.faces[0].aus.values()) for f in frames[:18]]
    assert np.mean(present) <= NEUTRAL_PRESENT, present
