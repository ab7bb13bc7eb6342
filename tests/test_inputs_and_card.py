import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk import load_image, store
from rtatl_sdk.contract.card import ModelCard, Provenance
from rtatl_sdk.errors import InputError, ModelCardError, ModelNotFoundError

BAD_IMAGES = {  # case: (make the input from tmp_path, what the error says)
    "missing file": (lambda d: d / "nope.jpg", "nope.jpg: no such file"),
    "text named .jpg": (lambda d: (d / "notes.jpg").write_bytes(b"this is text, not a JPEG") and d / "notes.jpg",
                        "notes.jpg: is not a decodable image"),
    "garbage bytes": (lambda d: b"\x00\x01garbage", "image bytes"),
    "empty array": (lambda d: np.zeros((0, 10, 3), np.uint8), "is empty"),
    "float array": (lambda d: np.zeros((10, 10, 3)), "dtype float64"),
    "five channels": (lambda d: np.zeros((10, 10, 5), np.uint8), r"shape \(10, 10, 5\)"),
    "a number": (lambda d: 12345, "unsupported type"),
    "a folder": (lambda d: d, "is a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_inputs_name_the_input(case, tmp_path):
    make, message = BAD_IMAGES[case]
    with pytest.raises(InputError, match=message):
        load_image(make(tmp_path))


def test_grey_rgba_rgb_and_pil_inputs():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = load_image(grey)
    assert out.shape == (3, 4, 3) and np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red in RGB order
    bgr = load_image(rgba, colour="rgb")
    assert bgr.shape == (3, 4, 3) and bgr[0, 0, 2] == 200 and bgr[0, 0, 0] == 0
    from PIL import Image

    pil = Image.fromarray(rgba[..., :3])
    assert np.array_equal(load_image(pil), bgr)
    with pytest.raises(InputError, match="colour"):
        load_image(rgba, colour="hsv")


def _card(**kw):
    base = dict(aus=["AU01", "AU12"], thresholds=[0.5, 0.4], provenance=Provenance(training_data="synthetic"))
    base.update(kw)
    return ModelCard(**base)


def test_card_round_trips_and_rejects_bad_content():
    card = _card(metrics={"f1_mean": 0.5, "f1": {"AU01": 0.4}})
    assert ModelCard.from_json(card.to_json()) == card
    raw = json.loads(card.to_json())
    for change, pattern in [({"aus": ["AU01", "AU99"]}, "AU99"),
                            ({"thresholds": [0.5]}, "1 thresholds for 2 AUs"),
                            ({"thresholds": [0.5, 1.5]}, "strictly between"),
                            ({"unknown_field": 1}, "unknown_field")]:
        with pytest.raises(ModelCardError, match=pattern):
            ModelCard.from_json(json.dumps({**raw, **change}), source="model.onnx")
    with pytest.raises(ModelCardError, match="model.onnx"):
        ModelCard.from_json("{not json", source="model.onnx")
    assert _card(aus=["1", "au12"]).aus == ["AU01", "AU12"]


def test_card_geometry_check():
    _card().check_geometry()
    with pytest.raises(ModelCardError, match="roi_size=32"):
        _card(roi_size=32).check_geometry()


def test_model_resolution_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("RTATL_MODEL_DIR", str(tmp_path / "store"))
    monkeypatch.delenv(store.FACE_DETECTOR.env_var, raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        store.resolve(store.FACE_DETECTOR)
    msg = str(err.value)
    assert str(tmp_path / "store" / "retinaface_mnet.onnx") in msg and "rtatl-fetch-models" in msg
    assert "RTATL_FACE_DETECTOR" in msg
    monkeypatch.setenv(store.FACE_DETECTOR.env_var, str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelNotFoundError, match="missing.onnx"):
        store.resolve(store.FACE_DETECTOR)
    real = tmp_path / "det.onnx"
    real.write_bytes(b"x")
    assert store.resolve(store.FACE_DETECTOR, real) == real
    with pytest.raises(ModelNotFoundError, match="not a file"):
        store.resolve(store.FACE_DETECTOR, tmp_path / "nope.onnx")


def test_a_bundled_model_by_name_and_a_name_that_is_also_a_file(tmp_path, monkeypatch):
    v2 = store.au_model_path("v2")
    assert v2 == store.PACKAGE_MODELS / "v2" / "model.int8.onnx" and v2.is_file()
    assert store.au_model_path("v3") == store.PACKAGE_MODELS / "model.int8.onnx"  # the default's name
    assert store.au_model_path("light") == store.PACKAGE_MODELS / "light" / "model.int8.onnx"  # the previous default
    assert store.au_model_path("model.onnx") == store.au_model_path(Path("model.onnx"))  # other text: a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v2").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="both a bundled model's name and a file"):
        store.au_model_path("v2")
    assert store.au_model_path("./v2") == Path("v2")
    monkeypatch.setattr(store, "PACKAGE_MODELS", tmp_path / "empty")
    (tmp_path / "v2").unlink()
    with pytest.raises(ModelNotFoundError, match="missing from this installation"):
        store.au_model_path("v2")


def test_importing_the_sdk_does_not_import_torch():
    code = ("import rtatl_sdk, rtatl_sdk.contract.geometry, rtatl_sdk.contract.card, rtatl_sdk.face, sys; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_cards_with_absurd_normalisation_are_refused_and_colour_order_is_applied():
    from rtatl_sdk import store
    from rtatl_sdk.contract.card import ModelCard
    from rtatl_sdk.contract.preprocess import model_inputs

    card = json.loads((store.PACKAGE_MODELS / "model.card.json").read_text())
    for key, value in (("std", [0, 0.2, 0.2]), ("std", [float("nan"), 0.2, 0.2]), ("mean", [120, 0.4, 0.4]),
                       ("colour_order", "YUV")):
        with pytest.raises(ModelCardError, match=key):
            ModelCard.from_json(json.dumps({**card, key: value}))
    crop = np.zeros((192, 192, 3), np.uint8)
    crop[..., 0] = 255  # blue in BGR
    pts = np.tile(np.linspace(40, 150, 68)[:, None], (1, 2))
    rgb, _ = model_inputs([crop], [pts], (1, 2), mean=(0, 0, 0), std=(1, 1, 1), colour_order="RGB")
    bgr, _ = model_inputs([crop], [pts], (1, 2), mean=(0, 0, 0), std=(1, 1, 1), colour_order="BGR")
    assert rgb[0, 2].max() == 1.0 and rgb[0, 0].max() == 0.0  # blue is the last channel for an RGB model
    assert bgr[0, 0].max() == 1.0 and bgr[0, 2].max() == 0.0
