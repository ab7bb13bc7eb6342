"""Bad input, faults and long runs: every entry point gives a result or the documented error."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtatl_sdk.errors import InputError, ModelFileError
from rtatl_sdk.io.images import load_image
from tests.helpers import REPO, wait_for

TRIED: dict[str, int] = {}  # generated inputs per property (printed at the end of the module)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.float16, np.float32, np.float64, np.bool_, np.complex64]


def _count(name):
    TRIED[name] = TRIED.get(name, 0) + 1


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    h, w = draw(st.integers(0, 48)), draw(st.integers(0, 48))
    c = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (h, w) if c is None else (h, w, c)
    fill = draw(st.sampled_from(["zeros", "random", "nan", "inf"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = rng.integers(0, 255, shape).astype(dtype) if fill == "random" else np.zeros(shape, dtype)
    if fill in ("nan", "inf") and np.issubdtype(dtype, np.floating):
        arr[...] = np.nan if fill == "nan" else np.inf
    return arr


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_bytes_never_leak_raw_errors(data):
    _count("load_image(bytes)")
    try:
        out = load_image(data)
        assert out.dtype == np.uint8 and out.ndim == 3
    except InputError as exc:
        assert "image bytes" in str(exc)


@SETTINGS
@given(arr=arrays())
def test_any_array_gives_an_image_or_input_error(arr):
    _count("load_image(array)")
    try:
        out = load_image(arr, name="frame")
    except InputError as exc:
        assert exc.input_name == "frame" and exc.reason
        return
    assert arr.dtype == np.uint8 and out.shape[:2] == arr.shape[:2] and out.shape[2] == 3


def test_huge_tiny_and_misnamed_inputs(tmp_path):
    with pytest.raises(InputError, match="sides above"):
        load_image(np.zeros((20000, 4, 3), np.uint8))
    fake = tmp_path / "holiday.png"
    fake.write_text("<html>not a picture</html>")
    with pytest.raises(InputError, match="holiday.png"):
        load_image(fake)
    assert load_image(np.zeros((1, 1), np.uint8)).shape == (1, 1, 3)


@pytest.mark.media
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(arr=arrays())
def test_detect_on_any_array(det, arr):
    _count("AUDetector.detect(array)")
    try:
        faces = det.detect(arr)
    except InputError as exc:
        assert exc.reason
        return
    assert faces == []  # tiny synthetic arrays hold no face


@pytest.mark.media
def test_detect_batch_names_the_bad_item(det, media):
    with pytest.raises(InputError, match=r"images\[1\]: dtype float32"):
        det.detect_batch([media / "single_face.jpg", np.zeros((8, 8, 3), np.float32)])
    assert det.detect(np.zeros((4000, 3000, 3), np.uint8)) == []  # large and empty


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=0, max_size=2048))
def test_model_loading_random_bytes(tmp_path_factory, data):
    _count("load_engine(bytes)")
    from rtatl_sdk.engines import load_engine

    p = tmp_path_factory.mktemp("m") / "model.onnx"
    p.write_bytes(data)
    with pytest.raises(ModelFileError, match="model.onnx: not a loadable ONNX model"):
        load_engine(p)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(alphabet="0123456789,;9x \n-", max_size=300))
def test_label_readers_on_random_text(tmp_path_factory, text):
    _count("label readers(text)")
    pytest.importorskip("torch")
    from training.data import raw

    d = tmp_path_factory.mktemp("lab")
    f = d / "F001_T1.csv"
    f.write_text(text)
    try:
        frames, labels = raw.read_bp4d_labels(f)
        assert labels.shape == (len(frames), 12) and set(np.unique(labels)) <= {-1, 0, 1}
    except InputError as exc:
        assert "F001_T1.csv" in str(exc)
    g = d / "SN001_au1.txt"
    g.write_text(text)
    try:
        out = raw.read_disfa_au_file(g)
        assert all(0 <= v <= 5 for v in out.values())
    except InputError as exc:
        assert "SN001_au1.txt" in str(exc)


def _video_with_bad_frames(src: Path, out: Path, n: int = 20, bad=(8, 9)) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(src))
    frames = [cap.read()[1] for _ in range(n)]
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    data = bytearray(out.read_bytes())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for k in bad:  # wipe the JPEG headers of these frames
        data[soi[k] + 2:soi[k] + 600] = bytes(598)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.media
def test_corrupt_frames_are_reported_and_the_rest_processed(det, media, model_path, tmp_path):
    video = _video_with_bad_frames(media / "single_face.mp4", tmp_path / "bad.avi")
    frames = list(det.detect_video(video))
    assert [f.index for f in frames] == list(range(20))
    assert [f.index for f in frames if f.error] == [8, 9]
    assert all(len(f.faces) == 1 for f in frames if not f.error)
    out = tmp_path / "r.csv"
    res = subprocess.run([sys.executable, "-m", "rtatl_sdk.apps.cli", str(video), "--model", str(model_path), "--out", str(out),
                          "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "frames [8-9] could not be decoded" in res.stderr
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [int(r["frame"]) for r in rows] == list(range(20))
    assert [r["error"] for r in rows if r["error"]] == ["frame could not be decoded"] * 2
    with pytest.raises(InputError, match="cannot be opened as a video"):
        (tmp_path / "x.mp4").write_bytes(os.urandom(1000))
        list(det.detect_video(tmp_path / "x.mp4"))


class _FakeCamera:
    """A camera that delivers ``n`` frames and then nothing (unplugged)."""

    def __init__(self, n):
        self.n, self.i = n, 0

    def isOpened(self):
        return True

    def get(self, prop):
        return 30.0 if prop == 5 else 0.0  # CAP_PROP_FPS

    def read(self):
        self.i += 1
        return (True, np.zeros((64, 64, 3), np.uint8)) if self.i <= self.n else (False, None)

    def release(self):
        pass


def test_camera_that_disconnects_or_never_delivers(monkeypatch, caplog):
    import cv2

    from rtatl_sdk.stream.video import iter_frames

    monkeypatch.setattr(cv2, "VideoCapture", lambda *_: _FakeCamera(3))
    with caplog.at_level(logging.WARNING):
        frames = list(iter_frames(0))
    assert len(frames) == 3 and "camera 0 stopped delivering frames after 3 frames" in caplog.text
    monkeypatch.setattr(cv2, "VideoCapture", lambda *_: _FakeCamera(0))
    with pytest.raises(InputError, match="camera 0: opened but delivered no frame"):
        list(iter_frames(0))


def _rows_when(path: Path, n: int, proc) -> bool:
    return wait_for(lambda: path.is_file() and len(path.read_text().splitlines()) > n, proc, timeout=120)


@pytest.mark.media
def test_rtatl_detect_survives_sigkill_with_resume(media, model_path, tmp_path):
    out = tmp_path / "r.csv"
    cmd = [sys.executable, "-m", "rtatl_sdk.apps.cli", str(media / "single_face.mp4"), "--model", str(model_path),
           "--out", str(out), "--quiet", "--threads", "1"]
    cycles = 0
    for wait_rows in (10, 30, 50):  # kill three times at different points, resume each time
        proc = subprocess.Popen(cmd + (["--resume"] if cycles else []), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        reached = _rows_when(out, wait_rows, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if reached:
            cycles += 1
    assert cycles >= 2
    subprocess.run(cmd + ["--resume"], cwd=REPO, check=True, capture_output=True)
    import csv

    frames = [int(r["frame"]) for r in csv.DictReader(out.open())]
    assert sorted(frames) == list(range(72))  # exactly one row per face per frame
    TRIED["rtatl-detect SIGKILL/resume cycles"] = cycles


def test_report_counts():
    print("\ngenerated inputs per property:", TRIED)


@pytest.mark.media
def test_a_cut_video_reports_every_frame_it_never_delivered(media, tmp_path):
    import cv2

    from rtatl_sdk.stream.video import iter_frames

    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    frames = [cap.read()[1] for _ in range(30)]
    h, w = frames[0].shape[:2]
    full = tmp_path / "full.avi"
    vw = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    got = list(iter_frames(cut))
    assert [f.index for f in got] == list(range(30))  # nothing vanishes
    good = [f.index for f in got if f.image is not None]
    assert good == list(range(len(good))) and 5 < len(good) < 25
    assert all(f.error.startswith("not delivered") for f in got[len(good):])
    assert all(f.error is None for f in got[: len(good)])
    assert [f.index for f in iter_frames(cut, max_frames=len(good) + 2)] == list(range(len(good) + 2))


def _avi(path, frames=10, declared=None):
    import struct

    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        vw.write(np.full((48, 64, 3), 20 * i, np.uint8))
    vw.release()
    if declared is not None:  # the AVI main header's and the stream header's frame counts
        b = bytearray(path.read_bytes())
        struct.pack_into("<I", b, b.find(b"avih") + 8 + 16, declared)
        struct.pack_into("<I", b, b.find(b"strh") + 8 + 32, declared)
        path.write_bytes(bytes(b))
    return path


def test_a_declared_frame_count_is_not_trusted_beyond_the_file(tmp_path):
    """A 10-frame AVI whose headers declare 2^31 - 1 frames: rows for the missing frames stop at a
    bound, and the last one says how many more the header claims (no hours of rows)."""
    from rtatl_sdk.stream.video import MIN_UNDELIVERED_ROWS, iter_frames

    frames = list(iter_frames(_avi(tmp_path / "liar.avi", declared=2**31 - 1)))
    assert sum(f.image is not None for f in frames) == 10
    assert len(frames) == 10 + MIN_UNDELIVERED_ROWS + 1
    assert "not believable" in frames[-1].error and str(2**31 - 2) in frames[-1].error


def test_a_video_without_any_frame_is_an_error_not_silence(tmp_path):
    from rtatl_sdk.stream.video import iter_frames

    path = _avi(tmp_path / "empty.avi", frames=0)  # opens (a valid container) but holds no frame
    with pytest.raises(InputError, match="holds no frame"):
        list(iter_frames(path))


def test_tiff_size_is_checked_from_its_header_before_decoding(tmp_path, monkeypatch):
    import struct

    import cv2

    from rtatl_sdk.io import images

    ok, buf = cv2.imencode(".tiff", np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", data[e:e + 4])
        if tag in (256, 257):
            struct.pack_into("<H" if typ == 3 else "<I", data, e + 8, 60000)
    assert images.header_size(bytes(data)) == (60000, 60000)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded before the size check"))
    with pytest.raises(InputError, match="60000x60000"):
        images.decode_bytes(bytes(data), "big.tiff")


def test_a_named_pipe_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_image(fifo)


def test_atomic_writes_never_follow_a_planted_link(tmp_path):
    from rtatl_sdk.io.files import atomic_write_bytes

    victim = tmp_path / "victim"
    victim.write_text("keep")
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the names an attacker could predict
        (tmp_path / f".out.json.tmp{pid}").symlink_to(victim)
    atomic_write_bytes(tmp_path / "out.json", b"{}")
    assert victim.read_text() == "keep" and (tmp_path / "out.json").read_bytes() == b"{}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_wrong_types_for_the_detector_and_its_stream_are_named(det, media):
    from rtatl_sdk import AUDetector
    from rtatl_sdk.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="123"):
        AUDetector(123)
    for kw in ({"lookahead": "2"}, {"max_frames": 2.5}, {"max_frames": 0}, {"start": -1}):
        with pytest.raises(InputError, match=next(iter(kw))):
            next(det.detect_video(media / "single_face.mp4", **kw))


def test_a_detector_used_after_a_fork_refuses_instead_of_hanging(det, media):
    """A forked child inherits the detector without MediaPipe's and onnxruntime's threads; it
    answers with an error (the documented choice) rather than never answering."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what detect() did, then leave at once
        try:
            det.detect(media / "single_face.jpg")
            msg = b"answered"
        except Exception as exc:  # noqa: BLE001 - the child reports any outcome
            msg = type(exc).__name__.encode() + b": " + str(exc).encode()[:200]
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    msg = os.read(r, 400).decode()
    os.close(r)
    assert msg.startswith("RTATLError") and "another process" in msg


def test_a_model_whose_extra_heads_have_the_wrong_shape_is_refused(tmp_path):
    from rtatl_sdk.contract.card import ModelCard, Provenance
    from rtatl_sdk.engines.onnx import check_graph
    from rtatl_sdk.errors import ModelCardError

    card = ModelCard(aus=["AU01", "AU12"], thresholds=[0.5, 0.5], provenance=Provenance(training_data="t"),
                     intensity_scale="t", outputs={"logits": "x", "intensity": "y"})
    ins = [("image", ["B", 3, 192, 192]), ("centres", ["B", 4, 2])]
    check_graph("m.onnx", card, ins, [("logits", ["B", 2]), ("intensity", ["B", 2])])
    with pytest.raises(ModelCardError, match="intensity"):
        check_graph("m.onnx", card, ins, [("logits", ["B", 2]), ("intensity", ["B", 1])])
