"""The default model shipped in rtatl_sdk/models (trained by training/recipes/default_model.py)."""

import json

import numpy as np
import pytest

from rtatl_sdk import store

pytestmark = pytest.mark.media
SHIPPED = store.PACKAGE_MODELS / "model.onnx"
# measured with the shipped int8 model (v3): AU12 (published probability) about 0.02 on the neutral
# frames 0-17 of single_face.mp4, 0.95 on the smiling frames 24-71; no AU present on his neutral
# frames (the light model and v2 alike; v1: 2.7, AU01, AU02, AU23)
MARGIN, NEUTRAL_PRESENT = 0.6, 1.0
REPORT = store.PACKAGE_MODELS / "recipe_report.json"


def test_default_model_ships_with_an_honest_card(default_det):
    assert SHIPPED.is_file()
    total = sum(p.stat().st_size for p in store.PACKAGE_MODELS.glob("*.onnx"))
    assert total < 70e6  # the light graph: fp32 52 MB + int8 13 MB for 18 AUs, intensity and expression heads
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
    assert "anchored at rest" in card.intensity_scale and len(card.intensity_rest) == 18
    assert "0.3 AUs called per neutral face" in card.provenance.notes and "1% per AU (3% for AU06, AU12)" in card.provenance.notes
    assert len(card.calibration) == len(card.thresholds_strict) == 18 and "FER" in card.provenance.notes
    assert card.emotions == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt"]
    assert "expression_test_fer_recall" in card.metrics  # per-class recall on FER's test split


def test_validation_report_has_the_prototype_contrasts_operating_point_and_rest():
    """What the recipe measured on people it never trained on (identity-disjoint LFW people and
    FER's own validation split), held-apart halves for the published parameters."""
    val = json.loads(REPORT.read_text())["validation"]
    s, t = val["student"], val["teacher"]
    assert len(s["contrasts"]) == 16 and s["auc_mean"] > t["auc_mean"] + 0.1  # 0.887 against 0.685
    weak = {k for k, c in s["contrasts"].items() if c["auc"] < 0.75}
    assert weak <= {"AU04 fear>neutral", "AU04 sadness>happiness"}, weak  # 0.55 and 0.74: said in the README
    held = val["held_apart"]["chosen"]
    assert held["neutral_present"] <= 0.3  # the budget, on people the fit never saw (0.263)
    assert held["present_on_happy"]["AU12"] >= 0.85 and held["present_on_happy"]["AU06"] >= 0.85
    assert max(held["intensity_neutral_mean"].values()) <= 0.5  # resting faces read near 0 (AU01 0.47 the most)
    assert held["au06_r_spearman_with_evidence_on_happy"] > 0.5  # AU06_r rises with the smile's evidence
    rel = [r for r in held["reliability"] if r["n"] >= 200]
    assert all(abs(r["mean_p"] - r["share_present"]) < 0.08 for r in rel), rel  # AUxx_p means what it says
    assert sum(val["operating_point"]["budget"]["per_au_neutral_rate"]) <= 0.3 + 1e-9
    assert s["edit_contrasts"]["AU09"]["share_rising"] > 0.9  # the validation people's nose-wrinkle edits


def test_expressions_are_reported_on_the_test_split_and_never_trained_people():
    rep = json.loads(REPORT.read_text())
    fer, lfw = rep["test"]["expressions"]["fer"], rep["validation"]["expressions"]["lfw"]
    assert fer["faces"] > 2000 and fer["accuracy"] > 0.7 and lfw["accuracy"] > 0.8
    assert set(fer["recall"]) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt"}
    assert fer["recall"]["happiness"] > 0.8 and fer["recall"]["surprise"] > 0.8 and fer["recall"]["neutral"] > 0.8
    assert len(fer["confusion"]) == 8 and fer["cross_entropy_vs_votes"] < 1.2


def test_card_numbers_match_the_recipe_report():
    from export.api import read_card

    card = read_card(SHIPPED)
    report = json.loads(REPORT.read_text())
    val = report["validation"]
    assert card.thresholds == pytest.approx(val["thresholds"])
    assert card.metrics["val_auc_mean"] == val["student"]["auc_mean"]
    assert card.metrics["teacher_val_auc_mean"] == val["teacher"]["auc_mean"]
    assert card.metrics["val_neutral_present"] == val["student"]["neutral_present"]
    op = val["operating_point"]
    assert card.calibration == op["calibration"] and card.intensity_rest == op["intensity_rest"]
    assert card.thresholds_strict == pytest.approx(op["thresholds_strict"])
    assert op["thresholds_strict"] == pytest.approx(val["strict"]["thresholds"])


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
    assert face.emotion == "happiness" and face.emotions["happiness"] > 0.8, face.emotions
    assert face.aus["AU06"].intensity > 2 and face.aus["AU12"].intensity > 3  # 3.5 and 4.7 measured
    for r in face.aus.values():  # the published probability: 0.5 is the operating point
        assert r.threshold == 0.5 and r.present == (r.probability >= 0.5)


def test_smile_on_the_held_out_identity(default_det, media):
    (face,) = default_det.detect(media / "single_face.jpg")
    assert face.aus["AU12"].present
    frames = list(default_det.detect_video(media / "single_face.mp4"))
    p12 = np.array([f.faces[0].aus["AU12"].probability for f in frames])
    neutral, smiling = p12[:18].mean(), p12[24:].mean()
    assert smiling - neutral > MARGIN, (neutral, smiling)
    present = [sum(bool(r.present) for r in f.faces[0].aus.values()) for f in frames[:18]]
    assert np.mean(present) <= NEUTRAL_PRESENT, present
    # his resting face reads near 0 (every AU's mean AUxx_r at most 0.6: AU02 0.57 the most), his
    # smile lifts AU06_r and AU12_r; expressions: neutral at rest, happiness once he smiles
    r = np.array([[f.faces[0].aus[a].intensity for a in default_det.aus] for f in frames])
    assert r[:18].mean(0).max() <= 0.6, dict(zip(default_det.aus, r[:18].mean(0).round(2)))
    j6, j12 = default_det.aus.index("AU06"), default_det.aus.index("AU12")
    assert r[24:, j6].mean() > 2 and r[24:, j12].mean() > 3
    tops = [f.faces[0].emotion for f in frames]
    assert tops[:18].count("neutral") >= 16 and tops[24:].count("happiness") >= 0.9 * len(tops[24:]), tops


def test_the_default_is_the_lighter_graph_on_the_same_contract(default_det):
    """The default model's graph resizes the 192-px crop to 128 px itself (``model.work_size``):
    the card's input and the SDK's crop are the full-size graph's."""
    card = default_det.card
    assert card.input_size == 192 and "resized to 128 px" in card.provenance.notes
    assert store.au_model_path("v3") == store.PACKAGE_MODELS / "model.int8.onnx"  # its name as an option


LIGHT = store.PACKAGE_MODELS / "light" / "model.int8.onnx"


def test_the_previous_default_ships_as_light_with_its_own_card(default_det, media):
    """``AUDetector("light")``: the previous default, unchanged: no calibration, expressions or rest
    anchoring on its card, so its probabilities are its raw scores."""
    from rtatl_sdk import AUDetector

    with AUDetector("light") as light:
        assert light.model_path == LIGHT and light.card.aus == default_det.card.aus
        assert light.card.calibration is None and light.emotion_names is None
        (face,) = light.detect(media / "single_face.jpg")
        assert all(r.score == r.probability for r in face.aus.values()) and face.emotions is None


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
