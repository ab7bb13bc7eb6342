"""The expression head through the SDK: face.emotions / face.emotion, rows, smoothing, the option
that turns it off, and the card's published probabilities (calibration) and intensities (rest)."""

import csv
import json

import numpy as np
import pytest

from rtatl_sdk.contract.emotions import EMOTIONS, softmax, vote_shares


def test_vote_shares_leave_out_votes_that_name_no_expression():
    v = vote_shares({"neutral": 6, "surprise": 1, "unknown": 2, "not_face": 1})
    assert v[EMOTIONS.index("neutral")] == pytest.approx(6 / 7) and v.sum() == pytest.approx(1.0)
    assert vote_shares({"unknown": 10}) is None
    assert softmax(np.array([[1000.0, 0.0]]))[0].tolist() == [1.0, 0.0]  # stable


def _card(**kw):
    from rtatl_sdk.contract.card import ModelCard, Provenance

    return ModelCard(aus=["AU01", "AU12"], thresholds=[0.8, 0.3], provenance=Provenance(training_data="test"), **kw)


def test_calibration_puts_the_threshold_at_one_half_and_keeps_the_order():
    card = _card(calibration=[2.0, 0.5])
    raw = np.array([[0.8, 0.3], [0.9, 0.1], [0.5, 0.6]])
    p = card.calibrate(raw)
    assert p[0] == pytest.approx([0.5, 0.5])  # at the threshold: 0.5
    assert p[1, 0] > 0.5 > p[1, 1] and p[2, 0] < 0.5 < p[2, 1]
    assert np.all(np.diff(card.calibrate(np.linspace(0.01, 0.99, 50)[:, None].repeat(2, 1)), axis=0) > 0)
    assert _card().calibrate(raw).tolist() == raw.tolist()  # no calibration on the card: the raw scores


def test_intensity_is_anchored_at_rest_and_keeps_the_top_of_the_scale():
    card = _card(intensity_rest=[2.0, 0.0], outputs={"logits": "x", "intensity": "y"}, intensity_scale="test")
    r = card.anchor_intensity(np.array([[2.0, 0.0], [1.0, 2.5], [5.0, 5.0], [3.5, 7.0]]))
    assert r.tolist() == [[0.0, 0.0], [0.0, 2.5], [5.0, 5.0], [2.5, 5.0]]


@pytest.mark.parametrize("bad", [{"calibration": [1.0]}, {"calibration": [0.0, 1.0]}, {"intensity_rest": [5.0, 0.0]},
                                 {"thresholds_strict": [0.5, 1.0]}, {"emotions": ["joy"], "outputs": {"emotions": "x"}},
                                 {"emotions": ["anger"]}])
def test_a_card_with_bad_published_output_parameters_is_refused(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        _card(**bad)


@pytest.fixture(scope="module")
def emo_model(tmp_path_factory):
    """An untrained model with the intensity and expression heads, exported as users would."""
    pytest.importorskip("torch")
    from export import export_model
    from training.checkpoint import write_initial_checkpoint
    from training.config import TrainConfig

    d = tmp_path_factory.mktemp("emo")
    cfg = TrainConfig.model_validate({"data": {"cache": "-"}, "model": {"emotions": 8, "intensity": True, "d": 32,
                                                                       "heads": 4, "ff": 64, "roi_cells": 4,
                                                                       "work_size": 96, "g_width": 16, "dc_width": 8,
                                                                       "flow_width": 8}})
    ckpt = write_initial_checkpoint(d / "init.ckpt", cfg, (1, 2, 4, 6, 12, 45))
    export_model(ckpt, d)
    return d / "model.onnx"


def test_faces_carry_the_eight_expressions_and_the_option_turns_them_off(emo_model, media):
    from rtatl_sdk import AUDetector, to_dataframe
    from rtatl_sdk.io.rows import columns

    with AUDetector(emo_model) as on, AUDetector(emo_model, emotions=False) as off:
        assert on.emotion_names == list(EMOTIONS) and off.emotion_names is None
        a, b = on.detect(media / "multi_face.jpg"), off.detect(media / "multi_face.jpg")
        assert len(a) == len(b) == 5
        for fa, fb in zip(a, b):
            assert list(fa.emotions) == list(EMOTIONS) and sum(fa.emotions.values()) == pytest.approx(1.0)
            assert fa.emotion == max(fa.emotions, key=fa.emotions.get)
            assert fb.emotions is None and fb.emotion is None
            assert fa.probabilities() == fb.probabilities()  # the AUs do not change
            assert json.loads(json.dumps(fa.to_dict()))["emotions"] == pytest.approx(fa.emotions)
        assert columns(on.aus, True, on.emotion_names)[-9:] == [*EMOTIONS, "error"]
        frames = list(on.detect_video(media / "single_face.mp4", max_frames=3))
        df = to_dataframe(frames)
        assert set(EMOTIONS) <= set(df.columns) and np.allclose(df[list(EMOTIONS)].sum(1), 1.0, atol=1e-3)


def test_smoothing_applies_to_the_expressions(emo_model, media):
    from rtatl_sdk import AUDetector

    with AUDetector(emo_model, reuse=False) as raw, AUDetector(emo_model, reuse=False, smoothing=0.2) as smooth:
        r = [f.faces[0].emotions for f in raw.detect_video(media / "single_face.mp4", max_frames=8)]
        s = [f.faces[0].emotions for f in smooth.detect_video(media / "single_face.mp4", max_frames=8)]
    rv = np.array([[d[e] for e in EMOTIONS] for d in r])
    sv = np.array([[d[e] for e in EMOTIONS] for d in s])
    assert np.allclose(sv[0], rv[0], atol=1e-6)  # the first frame starts the average
    expect = rv[0]
    for k in range(1, len(rv)):
        expect = 0.2 * rv[k] + 0.8 * expect
    assert np.allclose(sv[-1], expect, atol=1e-4) and np.allclose(sv.sum(1), 1.0, atol=1e-6)


def test_cli_writes_expression_columns_and_annotates_the_top_one(emo_model, media, tmp_path):
    from rtatl_sdk.apps.cli import main

    out = tmp_path / "r.csv"
    assert main([str(media / "single_face.jpg"), "--model", str(emo_model), "--out", str(out), "--quiet",
                 "--annotate", str(tmp_path / "ann")]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert rows and sum(float(rows[0][e]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert (tmp_path / "ann" / "single_face_annotated.jpg").is_file()
    out2 = tmp_path / "r2.csv"
    assert main([str(media / "single_face.jpg"), "--model", str(emo_model), "--out", str(out2), "--quiet",
                 "--no-emotions"]) == 0
    assert not set(EMOTIONS) & set(next(csv.reader(open(out2, newline=""))))


def test_strict_point_needs_a_card_that_has_one(emo_model):
    from rtatl_sdk import AUDetector
    from rtatl_sdk.errors import InputError

    with pytest.raises(InputError, match="strict"):
        AUDetector(emo_model, thresholds="strict")
    with pytest.raises(InputError, match="thresholds"):
        AUDetector(emo_model, thresholds="loose")
