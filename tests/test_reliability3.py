"""Reliability round 3: checkpoints that would run code, outputs over inputs, resumes that mix
settings, container timestamps, links in input folders, the cluster's rough edges, and bad
training settings. Each test asserts the outcome: what a user owns is unchanged, the one-line
reason, the exit status, the rows."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk.errors import CheckpointError, InputError, ModelCardError
from tests.helpers import REPO


# ---------------------------------------------------------------- security
def test_a_checkpoint_that_would_run_code_is_refused_before_any_of_it_runs(tmp_path):
    torch = pytest.importorskip("torch")
    from training.checkpoint import load_checkpoint, save_checkpoint

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": "rtatl-checkpoint-v1", "model": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused: it holds more than tensors and plain data"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    # old checkpoints keep loading: tensors, plain data and numpy values (older recipes stored those)
    save_checkpoint(tmp_path / "ok.ckpt", {"model": {"w": torch.ones(2)}, "metrics": {"auc": np.float64(0.7)},
                                           "thresholds": np.array([0.4, 0.6]), "aus": [1, 2]})
    state = load_checkpoint(tmp_path / "ok.ckpt")
    assert float(state["metrics"]["auc"]) == 0.7 and state["thresholds"].tolist() == [0.4, 0.6]


@pytest.mark.parametrize("tool", ["export.cli", "training.evaluate"])
def test_the_checkpoint_readers_refuse_such_a_file_in_one_line(tool, tmp_path):
    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": "rtatl-checkpoint-v1", "x": Payload()}, tmp_path / "evil.ckpt")
    argv = {"export.cli": ["--ckpt", str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "out")],
            "training.evaluate": ["--ckpt", str(tmp_path / "evil.ckpt"), "--cache", str(tmp_path)]}[tool]
    res = subprocess.run([sys.executable, "-m", tool, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "refused" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


# ---------------------------------------------------------------- data loss
@pytest.mark.media
def test_plots_of_several_videos_never_overwrite_an_input_or_each_other(det, media, tmp_path):
    from rtatl_sdk.apps.runner import plot_names

    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    for p in (a, b):
        p.parent.mkdir()
        shutil.copy(media / "single_face.mp4", p)
    photo = tmp_path / "a" / "clip_au.png"  # a user's photo with the name the plot would get
    shutil.copy(media / "single_face.jpg", photo.with_suffix(".jpg"))
    photo.with_suffix(".jpg").rename(photo)
    before = photo.read_bytes()
    names = plot_names([a, b, photo], tmp_path / "a" / "au.png")
    assert set(names) == {a, b} and len(set(names.values())) == 2 and photo not in set(names.values())
    assert plot_names([a, photo], tmp_path / "au.png") == {a: tmp_path / "au.png"}  # one video: the name given
    from rtatl_sdk.apps.cli import main

    assert main([str(tmp_path / "a"), str(b), "--plot", str(tmp_path / "a" / "au.png"), "--max-frames", "5",
                 "--out", str(tmp_path / "r.csv"), "--quiet", "--model", str(det.model_path)]) == 0
    assert photo.read_bytes() == before
    plots = sorted(p.name for p in (tmp_path / "a").glob("*_au.png") if p != photo)
    assert len(plots) == 2, plots  # one per video, though both are called clip.mp4


def test_a_second_cluster_run_with_files_of_the_same_name_gets_other_output_names(tmp_path):
    from rtatl_sdk.apps.cluster import Manifest, _names

    out = tmp_path / "out"
    out.mkdir()
    m = Manifest(out)
    first = tmp_path / "one" / "x.mp4"
    m.record(str(first), {"status": "done", "output": "x.csv"})
    (out / "x.csv").write_text("first run\n")
    second = tmp_path / "two" / "x.mp4"
    names = _names([second], m)
    assert names[second] != "x.csv" and names[second].startswith("x_") and names[second].endswith(".csv")
    assert _names([first], m)[first] == "x.csv"  # the same input keeps its name


@pytest.mark.media
def test_an_input_whose_output_name_would_be_too_long_does_not_fail_its_chunk(media, tmp_path):
    """A cluster task of images where one has a 240-byte name: every image of the task is done
    (its output name keeps the start of the stem and gets a hash), none fails with the long one."""
    from rtatl_sdk.apps.cluster import Manifest, Worker, _names, _units
    from rtatl_sdk.apps.runner import MAX_OUTPUT_NAME

    folder = tmp_path / "in"
    folder.mkdir()
    long_a = folder / ("a" * 236 + ".jpg")
    long_b = folder / ("a" * 235 + "b.jpg")  # the same first 200 bytes: the hash tells them apart
    plain = folder / "plain.jpg"
    for f in (long_a, long_b, plain):
        shutil.copyfile(media / "single_face.jpg", f)
    out = tmp_path / "out"
    out.mkdir()
    files = [long_a, long_b, plain]
    names = _names(files, Manifest(out))
    assert all(len(os.fsencode(n)) <= MAX_OUTPUT_NAME for n in names.values()) and len(set(names.values())) == 3
    assert names[plain] == "plain.csv" and names[long_a].startswith("a" * 150)
    (unit,) = _units(files, {f: str(out / n) for f, n in names.items()}, images_per_task=32)
    entries = Worker(None, {}).process_many(unit)
    assert [e["status"] for e in entries] == ["done"] * 3, entries
    assert all((out / n).is_file() for n in names.values())


# ---------------------------------------------------------------- silently wrong
def test_variable_frame_rate_video_uses_the_containers_timestamps(tmp_path):
    av = pytest.importorskip("av")
    import fractions

    from rtatl_sdk.stream.video import iter_frames

    path = tmp_path / "vfr.mp4"
    box = av.open(str(path), "w")
    s = box.add_stream("mpeg4", rate=30)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.codec_context.time_base = s.time_base = fractions.Fraction(1, 1000)
    stamps, t = [], 0
    for i in range(40):  # 30 frames at ~30 fps, then 10 at 5 fps
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 6, np.uint8), format="bgr24")
        f.pts, f.time_base = t, fractions.Fraction(1, 1000)
        stamps.append(t / 1000)
        for pkt in s.encode(f):
            box.mux(pkt)
        t += 33 if i < 30 else 200
    for pkt in s.encode():
        box.mux(pkt)
    box.close()
    got = [fr.timestamp for fr in iter_frames(path)]
    assert len(got) == 40
    assert np.abs(np.array(got) - stamps).max() < 0.002  # index / average fps would be off by 0.1 s and more


@pytest.mark.media
def test_resume_with_other_settings_refuses_in_one_line_and_touches_nothing(det, media, tmp_path, capsys):
    from rtatl_sdk.apps.cli import main, settings_file

    out = tmp_path / "r.csv"
    common = [str(media / "single_face.mp4"), "--out", str(out), "--max-frames", "6", "--quiet", "--model",
              str(det.model_path)]
    assert main(common) == 0
    assert json.loads(settings_file(out).read_text())["options"]["detect_every"] == 10
    before = out.read_bytes()
    for extra, needle in ((["--smooth", "0.5"], "smoothing: None -> 0.5"), (["--detect-every", "2"], "detect_every: 10 -> 2")):
        capsys.readouterr()
        assert main(common + ["--resume", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
        assert out.read_bytes() == before
    assert main(common + ["--resume"]) == 0  # the same settings continue


def test_a_cluster_rerun_with_other_settings_redoes_those_inputs(tmp_path):
    from rtatl_sdk.apps.cluster import Manifest

    out = tmp_path / "out"
    out.mkdir()
    (out / "x.csv").write_text("rows\n")
    m = Manifest(out)
    trial = {"model": "default", "options": {"smoothing": None}, "max_frames": 5}
    m.record("x.mp4", {"status": "done", "output": "x.csv", "settings": trial})
    full = {**trial, "max_frames": None}
    assert m.done("x.mp4", trial) and not m.done("x.mp4", full)
    assert "max_frames: 5 -> None" in m.redo_reason("x.mp4", full)


@pytest.mark.media
def test_rtatl_prep_redoes_a_sequence_whose_labels_were_corrected(media, tmp_path):
    pytest.importorskip("torch")
    from training import prep
    from training.data import synthetic
    from training.data.cache import read_part
    from training.flow import FlowParams

    root = synthetic.make_bp4d(tmp_path / "bp4d", [media / "single_face.mp4"], subjects=("F001", "M001"), tasks=("T1",),
                               frames=3, drop_images=0)
    cache = tmp_path / "cache"
    fast = FlowParams(scale=0.5, warps=1, scales=1)
    assert prep.prepare("BP4D", root, cache, params=fast, with_flow=False, progress=False)["resumed"] == 0
    label = root / "AUCoding" / "AU_OCC" / "M001_T1.csv"
    rows = [r.split(",") for r in label.read_text().splitlines()]
    rows[1][1] = "1" if rows[1][1] == "0" else "0"  # AU1 of the first frame corrected
    label.write_text("\n".join(",".join(r) for r in rows) + "\n")
    totals = prep.prepare("BP4D", root, cache, params=fast, with_flow=False, progress=False)
    assert totals["resumed"] == 1 and totals["frames"] == 3  # F001 reused, M001 redone
    assert read_part(cache / "parts" / "M001_T1.npz").labels[0, 0] == int(rows[1][1])


def test_symlinked_folders_are_searched_and_broken_links_and_loops_named(tmp_path):
    from rtatl_sdk.apps.runner import expand_inputs

    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "a.jpg").write_bytes(b"x")
    top = tmp_path / "in"
    top.mkdir()
    (top / "b.jpg").write_bytes(b"x")
    (top / "linked").symlink_to(real)
    (top / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (top / "loop").symlink_to(top)
    files, bad = expand_inputs([str(top)])
    assert sorted(f.name for f in files) == ["a.jpg", "b.jpg"]
    reasons = dict(bad)
    assert "broken symbolic link" in reasons[str(top / "gone.jpg")]
    assert "link loop" in reasons[str(top / "loop")]
    files, bad = expand_inputs([str(top / "gone.jpg")])
    assert files == [] and "broken symbolic link" in bad[0][1]


@pytest.mark.media
def test_an_annotated_image_that_cannot_be_written_is_a_named_failure(det, media, tmp_path, capsys):
    from rtatl_sdk.apps.cli import main

    ann = tmp_path / "ann"
    (ann / "single_face_annotated.jpg").mkdir(parents=True)  # a folder where the file should go
    out = tmp_path / "r.csv"
    code = main([str(media / "single_face.jpg"), "--annotate", str(ann), "--out", str(out), "--quiet", "--model",
                 str(det.model_path)])
    assert code == 1
    assert "annotated image could not be written" in capsys.readouterr().err
    assert len(list(csv.DictReader(out.open(newline="")))) == 1  # its row is written


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


def test_out_json_is_refused_with_the_name_to_use(tmp_path, capsys):
    from rtatl_sdk.apps.cli import main

    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main([str(tmp_path / "a.jpg"), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert ".jsonl" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- crashes and wrong behaviour
def test_cluster_flag_takes_a_folder_as_input_and_an_address_as_address():
    from rtatl_sdk.apps.cli import build_parser

    def parse(argv):
        a = build_parser().parse_args(argv)
        return a.cluster, [*getattr(a, "cluster_inputs", []), *a.inputs]

    assert parse(["--cluster", "archive/", "--out-dir", "results/"]) == ("local", ["archive/"])
    assert parse(["--cluster", "ray://head:10001", "/shared/archive", "--out-dir", "r"]) == ("ray://head:10001",
                                                                                            ["/shared/archive"])
    assert parse(["a/", "--cluster", "--out-dir", "r"]) == ("local", ["a/"])


def test_an_out_dir_inside_an_input_folder_is_not_read_as_inputs(tmp_path):
    from rtatl_sdk.apps.runner import expand_inputs

    (tmp_path / "a.jpg").write_bytes(b"x")
    out = tmp_path / "results"
    out.mkdir()
    for name in ("manifest.json", ".rtatl-cluster.lock", "a.csv"):
        (out / name).write_text("ours")
    files, bad = expand_inputs([str(tmp_path)], (), out_dir=out)
    assert [f.name for f in files] == ["a.jpg"] and bad == []


@pytest.mark.media
def test_one_input_that_raises_fails_alone_with_its_reason(det, media, tmp_path, monkeypatch):
    from rtatl_sdk.apps.cluster import Worker

    w = Worker(str(det.model_path), {})
    real = w.det.detect

    def flaky(image, *a, **k):
        if "bad" in str(getattr(image, "name", "")) or (isinstance(image, np.ndarray) and image.shape[0] == 100):
            raise TypeError("something broke in a library")
        return real(image, *a, **k)

    import cv2

    cv2.imwrite(str(tmp_path / "bad.jpg"), np.full((100, 100, 3), 90, np.uint8))
    monkeypatch.setattr(w.det, "detect", flaky)
    items = [(str(tmp_path / "bad.jpg"), "bad.jpg", str(tmp_path / "bad.csv")),
             (str(media / "single_face.jpg"), "single_face.jpg", str(tmp_path / "good.csv"))]
    bad, good = w.process_many(items)
    assert bad == {"status": "failed", "error": "TypeError: something broke in a library"}
    assert good["status"] == "done" and (tmp_path / "good.csv").is_file() and not (tmp_path / "bad.csv").exists()
    w.det.close()


def test_cluster_failures_end_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from rtatl_sdk.apps import cluster

    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def refuse(**kw):
        raise ConnectionError("\x1b[31mray client connection timeout\x1b[0m")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(InputError, match=r"^--cluster ray://h:1: cannot start or reach the Ray cluster \(ConnectionError: "
                                         r"ray client connection timeout\)$"):
        cluster._connect("ray://h:1")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot be made"):
        cluster.process_archive([str(tmp_path)], blocker / "out", progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"inputs": {"a.mp4": "done"}}))
    with pytest.raises(InputError, match="is not a manifest written by rtatl-detect --cluster"):
        cluster.process_archive([str(tmp_path / "nothing")], out, progress=False)
    with pytest.raises(InputError, match="smoothin: is not an AUDetector option"):
        cluster.process_archive([str(tmp_path)], out, detector={"smoothin": 0.5}, progress=False)
    text = cluster._first_line(RuntimeError("ray::Worker.process()\n\x1b[36mTraceback...\x1b[0m\nValueError: real reason"))
    assert text == "ValueError: real reason"


@pytest.mark.parametrize("override,needle", [("optim.batch_size=0", "optim.batch_size=0"), ("optim.lr=-1", "optim.lr=-1"),
                                             ("model.heads=3", "must divide model.d=128"),
                                             ("run.log_every=0", "run.log_every=0"), ("optim.steps=-5", "optim.steps=-5")])
def test_rtatl_train_refuses_bad_settings_in_one_line(override, needle, tmp_path):
    pytest.importorskip("torch")
    res = subprocess.run([sys.executable, "-m", "training.train", "--config", str(REPO / "training/configs/smoke.yaml"),
                          override, f"run.out={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.media
def test_an_annotated_video_that_cannot_be_opened_is_named_and_the_rows_are_kept(det, media, tmp_path, capsys):
    from rtatl_sdk.apps.cli import main

    blocked = tmp_path / "ann.mp4"
    blocked.mkdir()  # a folder where the video file should go
    out = tmp_path / "r.csv"
    code = main([str(media / "single_face.mp4"), "--annotate", str(blocked), "--out", str(out), "--max-frames", "5",
                 "--quiet", "--model", str(det.model_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "could not be opened for writing" in err and err.count("could not be opened") == 1
    assert len(list(csv.DictReader(out.open(newline="")))) == 5


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
