"""AUDetector, rtatl-detect and the examples on real media with an exported (untrained) model."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk.errors import InputError, ModelCardError, ModelFileError, ModelNotFoundError

pytestmark = pytest.mark.media
from tests.helpers import REPO


def test_detect_counts_and_typed_results(det, media):
    (face,) = det.detect(media / "single_face.jpg")
    assert face.landmarks.shape == (68, 2)
    assert list(face.aus) == [f"AU{a:02d}" for a in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)]
    for r in face.aus.values():
        assert 0.0 <= r.probability <= 1.0 and r.present == (r.probability >= r.threshold)
    d = face.to_dict()
    assert len(d["landmarks"]) == 68 and set(d["aus"]["AU12"]) == {"probability", "present", "threshold", "intensity",
                                                                   "score"}
    assert d["aus"]["AU12"]["intensity"] is None  # a model without the intensity head
    assert len(det.detect(media / "multi_face.jpg")) == 5
    assert det.detect(media / "free-mountain-vector-01.jpg") == []


def test_rgb_and_pil_inputs_give_the_same_faces(det, media):
    import cv2
    from PIL import Image

    bgr = cv2.imread(str(media / "single_face.jpg"))
    a = det.detect(bgr)[0].probabilities()
    b = det.detect(np.ascontiguousarray(bgr[:, :, ::-1]), colour="rgb")[0].probabilities()
    c = det.detect(Image.open(media / "single_face.jpg"))[0].probabilities()
    assert a == b
    assert max(abs(a[k] - c[k]) for k in a) < 0.02  # PIL's JPEG decoder differs slightly from OpenCV's


def test_detect_batch_equals_detect(det, media):
    paths = [media / "single_face.jpg", media / "free-mountain-vector-01.jpg", media / "multi_face.jpg"]
    batched = det.detect_batch(paths)
    assert [len(x) for x in batched] == [1, 0, 5]
    for p, faces in zip(paths, batched):
        alone = det.detect(p)
        for a, b in zip(alone, faces):
            pa, pb = a.probabilities(), b.probabilities()
            assert max(abs(pa[k] - pb[k]) for k in pa) < 1e-5
            assert np.allclose(a.landmarks, b.landmarks)
    with pytest.raises(InputError, match="a list of images"):
        det.detect_batch(str(paths[0]))


def test_video_tracks_and_dataframe(det, media):
    from rtatl_sdk import to_dataframe

    frames = list(det.detect_video(media / "single_face.mp4"))
    assert len(frames) == 72 and [f.index for f in frames] == list(range(72))
    assert all(len(f.faces) == 1 for f in frames)
    assert {f.faces[0].track_id for f in frames} == {0}
    assert frames[30].timestamp == pytest.approx(1.0, abs=0.01)
    df = to_dataframe(frames, "single_face.mp4")
    assert len(df) == 72 and list(df.columns[:11]) == ["input", "frame", "timestamp", "success", "face", "track_id", "x", "y",
                                                       "w", "h", "quality"]
    assert "AU12_p" in df and "AU12_c" in df


def test_face_appears_part_way_through_video(det, media):
    has = [bool(f.faces) for f in det.detect_video(media / "noface_face.mov")]
    first = has.index(True)
    assert first >= 10 and not any(has[:first]) and sum(has) >= 60


def test_threads_give_the_same_results_as_serial(det, media):
    paths = [media / "single_face.jpg", media / "multi_face.jpg"] * 3
    serial = [[f.probabilities() for f in det.detect(p)] for p in paths]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda p: [f.probabilities() for f in det.detect(p)], paths))
    assert threaded == serial


def test_missing_default_model_says_how_to_get_one(tmp_path, monkeypatch):
    from rtatl_sdk import AUDetector, store

    monkeypatch.setattr(store, "PACKAGE_MODELS", tmp_path / "pkg")
    monkeypatch.setenv("RTATL_MODEL_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("RTATL_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError, match="rtatl-export"):
        AUDetector()


def _truncated(model_path, d):
    data = model_path.read_bytes()
    (d / "trunc.onnx").write_bytes(data[: len(data) // 2])
    return d / "trunc.onnx"


def _card_edited(model_path, d, edit, name):
    import onnx

    m = onnx.load(str(model_path))
    edit(m)
    onnx.save(m, str(d / name))
    return d / name


def _no_card(m):
    del m.metadata_props[:]


def _roi_32(m):
    m.metadata_props[0].value = m.metadata_props[0].value.replace('"roi_size":48', '"roi_size":32')


BAD_MODELS = {
    "truncated": (_truncated, ModelFileError, "trunc.onnx: not a loadable ONNX model"),
    "no card": (lambda mp, d: _card_edited(mp, d, _no_card, "nocard.onnx"), ModelCardError, "no RTATL model card"),
    "other geometry": (lambda mp, d: _card_edited(mp, d, _roi_32, "geom.onnx"), ModelCardError, "roi_size=32"),
    "missing": (lambda mp, d: d / "none.onnx", ModelNotFoundError, "no such file"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_files_fail_before_any_frame(case, tmp_path, model_path):
    from rtatl_sdk import AUDetector

    make, error, message = BAD_MODELS[case]
    with pytest.raises(error, match=message):
        AUDetector(make(model_path, tmp_path))


def _run(args, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=e, cwd=REPO, timeout=600)


def test_rtatl_detect_folder_with_bad_files(model_path, media, tmp_path):
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg"):
        shutil.copy(media / name, folder / name)
    (folder / "broken.jpg").write_bytes((media / "single_face.jpg").read_bytes()[:200])
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "r.csv"
    res = _run(["-m", "rtatl_sdk.apps.cli", str(folder), str(media / "single_face.mp4"), "--max-frames", "10",
                "--model", str(model_path), "--out", str(out), "--quiet", "--annotate", str(tmp_path / "ann")])
    assert res.returncode == 1
    assert "broken.jpg: is not a decodable image" in res.stderr
    assert "readme.txt: not an image or video file" in res.stderr
    import csv

    rows = list(csv.DictReader(out.open()))
    per_input = {}
    for r in rows:
        per_input.setdefault(Path(r["input"]).name, []).append(r)
    assert len(per_input["single_face.jpg"]) == 1 and len(per_input["multi_face.jpg"]) == 5
    assert len(per_input["single_face.mp4"]) == 10 and {r["track_id"] for r in per_input["single_face.mp4"]} == {"0"}
    (no_face,) = per_input["free-mountain-vector-01.jpg"]  # processed, no face: one row that says so
    assert no_face["success"] == "0" and no_face["face"] == "" and no_face["AU12_p"] == ""
    assert {r["success"] for r in rows if Path(r["input"]).name != "free-mountain-vector-01.jpg"} == {"1"}
    assert (tmp_path / "ann" / "multi_face_annotated.jpg").is_file() and (tmp_path / "ann" / "single_face_annotated.mp4").is_file()


def test_webcam_example_headless_on_video(model_path, media, tmp_path):
    out = tmp_path / "live.csv"
    res = _run(["examples/webcam.py", "--headless", "--source", str(media / "single_face.mp4"), "--out", str(out)],
               RTATL_MODEL=str(model_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "72 frames processed" in res.stderr
    assert len(out.read_text().splitlines()) == 1 + 72


def test_other_examples_run(model_path, media, tmp_path):
    res = _run(["examples/batch_images.py", str(media)], RTATL_MODEL=str(model_path))
    assert res.returncode == 0 and res.stdout.count("multi_face.jpg face") == 5 and "free-mountain-vector-01.jpg: no face" in res.stdout
    res = _run(["examples/video_to_csv.py", str(media / "single_face.mp4"), str(tmp_path / "v.csv")], RTATL_MODEL=str(model_path))
    assert res.returncode == 0 and "72 frames, 72 face rows" in res.stdout


def test_a_face_cut_by_the_frame_marks_the_aus_it_cannot_see(det, media):
    import cv2

    from rtatl_sdk.io.rows import face_row

    img = cv2.imread(str(media / "single_face.jpg"))
    (full,) = det.detect(img)
    assert full.quality == 1.0 and all(r.present is not None for r in full.aus.values())
    cut = int(full.landmarks[36:48, 1].mean()) - 8  # the top edge just above the eyes: brows out of frame
    (face,) = det.detect(img[cut:])
    assert face.quality < 0.9
    assert face.aus["AU01"].present is None and face.aus["AU02"].present is None and face.aus["AU04"].present is None
    assert face.aus["AU12"].present is not None and face.aus["AU12"].probability > 0
    row = face_row("x.jpg", 0, 0.0, face)
    assert row["AU01_c"] == "" and row["AU12_c"] in (0, 1) and row["quality"] == round(face.quality, 3)


def test_detect_batch_pipelines_many_images_in_small_batches_and_names_a_bad_one(model_path, media):
    from rtatl_sdk import AUDetector

    paths = [media / "multi_face.jpg", media / "single_face.jpg", media / "free-mountain-vector-01.jpg"] * 3
    with AUDetector(model_path, max_batch=2) as det:
        batched = det.detect_batch(paths)
        assert [len(x) for x in batched] == [5, 1, 0] * 3
        for p, faces in zip(paths, batched):
            alone = det.detect(p)
            a = [list(f.probabilities().values()) for f in alone]
            b = [list(f.probabilities().values()) for f in faces]
            assert len(a) == len(b) and np.allclose(np.array(a, float), np.array(b, float), atol=1e-5)
        with pytest.raises(InputError, match=r"images\[1\]"):
            det.detect_batch([paths[0], np.zeros((4, 4, 5), np.uint8), paths[1]])
