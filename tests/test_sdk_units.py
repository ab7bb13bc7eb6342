"""Writers, smoothing and calibration without models."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk.errors import InputError
from rtatl_sdk.io.writers import RowWriter
from rtatl_sdk.stream.temporal import NeutralBaseline, Smoother

AUS = ["AU01", "AU12"]


def rows(frame, n=2, name="v.mp4"):
    return [{"input": name, "frame": frame, "timestamp": frame / 30, "face": i, "track_id": i, "x": 1, "y": 2, "w": 3, "h": 4,
             "AU01_p": 0.1, "AU12_p": 0.9, "AU01_c": 0, "AU12_c": 1} for i in range(n)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_drops_partial_line_and_redoes_last_frame(tmp_path, suffix):
    path = tmp_path / f"r{suffix}"
    w = RowWriter(path, AUS)
    for f in range(5):
        w.write_rows(rows(f))
    w.close()
    text = path.read_text()
    path.write_text(text + text.splitlines()[-1][:17])  # killed mid-line
    w = RowWriter(path, AUS, resume=True)
    assert w.last_done == {"v.mp4": 3}  # frame 4 is redone, its rows were dropped
    w.write_rows(rows(4))
    w.close()
    lines = path.read_text().splitlines()
    assert len(lines) == (1 if suffix == ".csv" else 0) + 10
    assert len(set(lines)) == len(lines)


def test_writer_rejects_unknown_suffix_and_foreign_csv(tmp_path):
    with pytest.raises(InputError, match="must end in .csv or .jsonl"):
        RowWriter(tmp_path / "r.txt", AUS)
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="cannot resume"):
        RowWriter(tmp_path / "x.csv", AUS, resume=True)


def test_smoother_is_an_ema_per_track():
    s = Smoother(0.5)
    assert np.allclose(s(0, np.array([1.0])), [1.0])
    assert np.allclose(s(0, np.array([0.0])), [0.5])
    assert np.allclose(s(1, np.array([0.2])), [0.2])  # another track starts fresh
    with pytest.raises(ValueError):
        Smoother(0.0)


def test_neutral_baseline_marked_and_learned():
    b = NeutralBaseline(keep=2, warmup=3)
    b.add_neutral(0, np.array([0.2, 0.5]))
    assert np.allclose(b(0, np.array([0.6, 0.5])), [0.5, 0.0])  # (0.6-0.2)/0.8, at baseline -> 0
    seq = [np.array([0.3, 0.3]), np.array([0.9, 0.9]), np.array([0.1, 0.1])]
    outs = [b(1, p) for p in seq]
    assert np.allclose(outs[0], seq[0]) and np.allclose(outs[1], seq[1])  # no baseline during warm-up
    assert np.allclose(b.baseline(1), [0.2, 0.2])  # mean of the 2 lowest-activity frames
    assert np.allclose(outs[2], [0.0, 0.0])


def test_second_writer_is_refused_before_anything_is_truncated(tmp_path):
    path = tmp_path / "r.csv"
    w = RowWriter(path, AUS)
    w.write_rows(rows(0))
    with pytest.raises(InputError, match="another process"):
        RowWriter(path, AUS)
    with pytest.raises(InputError, match="another process"):
        RowWriter(path, AUS, resume=True)
    w.close()
    assert len(path.read_text().splitlines()) == 3  # header + the first writer's two rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_with_other_inputs_keeps_the_previous_last_input(tmp_path, suffix):
    path = tmp_path / f"r{suffix}"
    w = RowWriter(path, AUS)
    w.write_rows(rows(0, name="a.jpg"))
    w.write_rows(rows(0, name="b.jpg"))
    w.close()
    w = RowWriter(path, AUS, resume=True, inputs=["c.jpg"])
    assert w.last_done == {"a.jpg": 0, "b.jpg": 0}  # b.jpg is not redone by this run: its rows stay
    w.write_rows(rows(0, name="c.jpg"))
    w.close()
    w = RowWriter(path, AUS, resume=True, inputs=["c.jpg"])
    assert w.last_done == {"a.jpg": 0, "b.jpg": 0}  # c.jpg's last frame is redone
    w.close()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("name", ["line\nbreak.mp4", 'quote",comma.mp4', "bad\udcffbyte.mp4"])
def test_resume_reads_back_any_input_name(tmp_path, suffix, name):
    path = tmp_path / f"r{suffix}"
    w = RowWriter(path, AUS)
    for f in range(3):
        w.write_rows(rows(f, name=name))
    w.close()
    w = RowWriter(path, AUS, resume=True, inputs=[name])
    assert w.last_done == {name: 1}
    w.close()


def test_resume_refuses_a_foreign_jsonl_without_touching_it(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(InputError, match="line 1 is not a row"):
        RowWriter(path, AUS, resume=True)
    assert path.read_text() == '{"hello": 1}\n'


def _fake_face(present=True):
    from rtatl_sdk.results import AUResult, Box, FaceAUs

    aus = {"AU01": AUResult(probability=0.9, present=present, threshold=0.5),
           "AU12": AUResult(probability=0.1, present=None, threshold=0.5)}
    return FaceAUs(index=0, box=Box(x=10, y=10, w=30, h=30, score=1.0), landmarks=np.full((68, 2), 25.0), aus=aus)


def test_annotate_draws_on_a_copy_and_marks_unseen_aus():
    from rtatl_sdk.io import draw

    img = np.zeros((80, 80, 3), np.uint8)
    out = draw.annotate(img, [_fake_face()])
    assert img.sum() == 0 and out.sum() > 0  # the caller's image is untouched
    assert out[10, 10:40].any() and not out[60:, :5].any()  # the box is drawn where the face is
    face = _fake_face()
    assert face.index == 0


def test_au_heatmap_writes_a_png_with_gaps(tmp_path):
    import cv2

    from rtatl_sdk.io.draw import au_heatmap

    series = [(t / 10, None if t == 3 else [t / 10, 1 - t / 10]) for t in range(10)]
    au_heatmap(series, ["AU01", "AU12"], tmp_path / "p.png", "clip")
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img is not None and img.shape[1] == 1000


def test_fetch_models_offline_fails_in_one_line(tmp_path, monkeypatch, capsys):

    from rtatl_sdk.apps import fetch

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: No matching distribution"))
    assert fetch.main(["--dest", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "offline?" in err and "--wheels" in err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_cuts_the_file_in_place_and_never_rewrites_earlier_rows(tmp_path, suffix, monkeypatch):
    """A kill during a resume must not cost rows of inputs outside it: the recovery only cuts the
    file at a byte offset (the torn tail, the redone frame), it never truncates and rewrites it,
    and it reads the file as a stream (no row list)."""
    path = tmp_path / f"r{suffix}"
    w = RowWriter(path, AUS)
    for f in range(300):
        w.write_rows(rows(f, name="old.mp4"))
    for f in range(3):
        w.write_rows(rows(f, name="new.mp4"))
    w.close()
    before = path.read_bytes()
    path.write_bytes(before + before.splitlines(keepends=True)[-1][:9])  # killed mid-row
    written = []
    monkeypatch.setattr(RowWriter, "write_rows", lambda self, r: written.append(r))
    monkeypatch.setattr(RowWriter, "_rows", lambda *a: pytest.fail("the whole file was loaded"), raising=False)
    w = RowWriter(path, AUS, resume=True, inputs=["new.mp4"])
    w.close()
    assert written == []  # nothing rewritten
    after = path.read_bytes()
    assert before.startswith(after) and after.count(b"old.mp4") == 600  # every old row, byte for byte
    assert w.last_done == {"old.mp4": 299, "new.mp4": 1}


def test_resume_refuses_a_broken_row_in_the_middle_instead_of_cutting_there(tmp_path):
    path = tmp_path / "r.jsonl"
    w = RowWriter(path, AUS)
    w.write_rows(rows(0))
    w.close()
    text = path.read_text()
    path.write_text(text + "not json\n" + text)
    with pytest.raises(InputError, match="line 3 is not a row"):
        RowWriter(path, AUS, resume=True)
    assert path.read_text() == text + "not json\n" + text


def test_a_writer_made_from_the_detector_takes_its_columns():
    """RowWriter(path, det): AU list, intensity and expression columns come from the detector, so a
    script cannot forget ``intensity=`` (the webcam example did)."""
    from types import SimpleNamespace

    from rtatl_sdk.contract.emotions import EMOTIONS

    det = SimpleNamespace(aus=AUS, has_intensity=True, emotion_names=list(EMOTIONS))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        w = RowWriter(Path(d) / "x.csv", det)
        assert "AU12_r" in w.columns and w.columns[-9:] == [*EMOTIONS, "error"]
        w.close()


def test_model_inputs_are_normalise_of_the_colour_swapped_crops_bit_for_bit():
    """The per-plane fast path (no channel-swapped copy, no transpose) computes exactly what
    ``normalise`` does on the model's colour order: equal arrays, not merely close ones."""
    from rtatl_sdk.contract import preprocess
    from rtatl_sdk.contract.au import AU_SETS
    from tests.helpers import mean_face

    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (192, 192, 3), dtype=np.uint8) for _ in range(3)]
    pts = [mean_face(rng, 1.0) for _ in crops]
    for order, step in (("RGB", -1), ("BGR", 1)):
        for mean, std in ((preprocess.MEAN, preprocess.STD), ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))):
            image, centres = preprocess.model_inputs(crops, pts, AU_SETS["OPENFACE"], mean, std, order)
            want = preprocess.normalise(np.stack([c[:, :, ::step] for c in crops]), mean, std)
            assert image.dtype == np.float32 and image.flags.c_contiguous and np.array_equal(image, want)
            assert centres.shape == (3, 36, 2)
    with pytest.raises(ValueError, match="one size"):
        preprocess.model_inputs([crops[0], crops[0][:100]], pts[:2], AU_SETS["BP4D"])


def test_a_face_aligns_from_its_frame_on_first_use_and_then_lets_the_frame_go():
    from rtatl_sdk.contract import geometry
    from rtatl_sdk.face.pipeline import Face
    from rtatl_sdk.results import Box
    from tests.helpers import mean_face

    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    pts = mean_face() * 1.5 + [160, 120]
    face = Face(Box(x=100, y=60, w=120, h=140, score=0.9), np.zeros((478, 3)), pts, frame=frame)
    assert "on first use" in repr(face)
    want = geometry.align_face(frame, pts)
    got = face.aligned
    assert np.array_equal(got.image, want.image) and np.array_equal(got.matrix, want.matrix)
    assert face._frame is None and face.aligned is got  # made once; the frame is not held
    with pytest.raises(ValueError, match="aligned canvas or the frame"):
        Face(face.box, face.mesh, pts)


def test_the_face_detectors_input_is_the_mean_subtracted_planes_bit_for_bit():
    """The detector's per-plane input equals ``(img - mean).transpose(2, 0, 1)``, odd sizes too."""
    from rtatl_sdk.face.detector import _MEAN_BGR, detector_input

    rng = np.random.default_rng(4)
    for h, w in ((360, 640), (17, 33)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x = detector_input(img)
        want = (img.astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[None]
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (1, 3, h, w) and np.array_equal(x, want)


def test_a_full_disk_while_writing_rows_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """The disk takes half of a write, then refuses: one InputError naming the file, the half row
    cut off again (the file ends at its last whole row), and closing the writer raises nothing
    (no buffered rest is flushed at close, as Python's buffered files would)."""
    import errno

    from rtatl_sdk.io import writers
    from rtatl_sdk.io.writers import RowWriter

    w = RowWriter(tmp_path / "r.csv", ["AU01"])
    w.write_rows([{"input": "a.jpg", "frame": 0, "timestamp": 0.0, "success": 1, "AU01_p": 0.25}])
    whole = (tmp_path / "r.csv").read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.os, "write", half_then_full)
    with pytest.raises(InputError, match=r"r\.csv: cannot be written \(No space left on device\); the rows before are kept"):
        w.write_rows([{"input": "b.jpg", "frame": 0, "timestamp": 0.0, "success": 1, "AU01_p": 0.75}])
    monkeypatch.setattr(writers.os, "write", real_write)
    w.close()
    assert (tmp_path / "r.csv").read_bytes() == whole  # the header and the first row, nothing torn
