"""rtatl-detect never overwrites what a user owns, and checks every option before touching outputs."""

import csv
import shutil
from pathlib import Path

import pytest

from rtatl_sdk.apps.cli import main
from rtatl_sdk.apps.inputs import annotation_names


@pytest.fixture
def inputs(tmp_path, media):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(media / "single_face.jpg", d / "a.jpg")
    shutil.copy(media / "multi_face.jpg", d / "sub" / "a.jpg")
    return d


BAD = {  # case: (extra inputs, options, what the one-line error names)
    "smooth above 1": ([], ["--smooth", "2"], "--smooth"),
    "negative camera": ([], ["--camera", "-1"], "--camera"),
    "zero max frames": ([], ["--max-frames", "0"], "--max-frames"),
    "negative threads": ([], ["--threads", "-1"], "--threads"),
    "zero detection period": ([], ["--detect-every", "0"], "--detect-every"),
    "resume without out": ([], ["--resume"], "--resume"),
    "plot not png": ([], ["--plot", "{tmp}/p.jpg"], "--plot"),
    "out under a file": ([], ["--out", "{tmp}/in/a.jpg/r.csv"], "is a file, not a folder"),
    "out is an input": (["{tmp}/in/a.csv"], ["--out", "{tmp}/in/a.csv"], "is one of the inputs"),
    "video annotate with two inputs": ([], ["--annotate", "{tmp}/x.mp4"], "exactly one video"),
    "annotate is a file": ([], ["--annotate", "{tmp}/in/a.jpg"], "not a folder"),
    "cluster with a results file": ([], ["--cluster", "--out-dir", "{tmp}/o"], "--cluster with --out"),
    "cluster without a folder": ([], ["--out", "{tmp}/r.csv", "--cluster"], "--out-dir"),
    "out-dir without cluster": ([], ["--out-dir", "{tmp}/o"], "is an option of --cluster"),
    "zero workers": ([], ["--workers", "0"], "--workers"),
    "threads beyond any machine": ([], ["--threads", "100000"], "--threads 100000"),
    "infinite focal length": ([], ["--focal-length", "inf"], "--focal-length"),
    "unknown operating point": ([], ["--thresholds", "loose"], "--thresholds"),
    "openface group not computed": ([], ["--openface", "{tmp}/of", "--openface-groups", "aus", "3Dfp"], "3Dfp"),
    "openface switch without openface": ([], ["--openface-spaced"], "is an option of --openface"),
    "openface folder is the out file": ([], ["--openface", "{tmp}/keep.csv"], "--openface"),
    "report folder is the out file": ([], ["--report", "{tmp}/r.csv", "--out", "{tmp}/r.csv"], "--report"),
}


@pytest.mark.media
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_options_fail_in_one_line_before_outputs_are_touched(case, inputs, tmp_path, capsys):
    more, opts, needle = ([x.format(tmp=tmp_path) for x in part] if isinstance(part, list) else part for part in BAD[case])
    (inputs / "a.csv").write_text("mine\n")
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    keep = tmp_path / "keep.csv"
    keep.write_text("previous results\n")
    argv = [str(inputs), *more] + (["--out", str(keep)] if "--out" not in opts and "--resume" not in opts else []) + opts
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert keep.read_text() == "previous results\n"
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before


def test_annotation_names_never_collide_or_hit_an_input(tmp_path):
    files = [tmp_path / "a.jpg", tmp_path / "sub" / "a.jpg", tmp_path / "b.jpg", tmp_path / "b_annotated.jpg",
             tmp_path / "clip.mp4"]
    names = annotation_names(files)
    assert len(set(names.values())) == len(files)
    assert not {f.name for f in files} & set(names.values())
    assert names[tmp_path / "clip.mp4"] == "clip_annotated.mp4"
    assert names[tmp_path / "a.jpg"].startswith("a_") and names[tmp_path / "a.jpg"].endswith("_annotated.jpg")


@pytest.mark.media
def test_annotating_into_the_input_folder_keeps_originals_and_reruns_identically(inputs, model_path, tmp_path):
    originals = {p: p.read_bytes() for p in inputs.rglob("*.jpg")}
    out = inputs / "results.csv"
    args = [str(inputs), "--model", str(model_path), "--out", str(out), "--annotate", str(inputs), "--quiet"]
    assert main(args) == 0
    first = list(csv.DictReader(out.open()))
    for p, data in originals.items():
        assert p.read_bytes() == data, f"{p} was overwritten"
    made = sorted(p.name for p in inputs.rglob("*_annotated.jpg"))
    assert len(made) == 2  # one per input, though both are called a.jpg
    assert main(args) == 0  # the outputs now lie in the input folder: they are not inputs
    assert list(csv.DictReader(out.open())) == first
    assert sorted(p.name for p in inputs.rglob("*_annotated.jpg")) == made


@pytest.mark.media
def test_file_names_of_any_bytes_are_processed_and_resumable(tmp_path, media, model_path):

    d = tmp_path / "in"
    d.mkdir()
    odd = d / os.fsdecode(b"caf\xe9 \nphoto.jpg")  # not UTF-8, with a line break
    shutil.copy(media / "single_face.jpg", odd)
    clip = d / os.fsdecode(b"clip\xff.mp4")  # OpenCV itself cannot take such a name
    shutil.copy(media / "no_face.mp4", clip)
    shutil.copy(media / "single_face.jpg", d / "z.jpg")
    out = tmp_path / "r.csv"
    ann = tmp_path / "ann"
    args = [str(d), "--model", str(model_path), "--out", str(out), "--quiet", "--max-frames", "3", "--annotate", str(ann)]
    assert main(args) == 0
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        names = [r["input"] for r in csv.DictReader(fh)]
    assert names == [str(odd), str(clip), str(clip), str(clip), str(d / "z.jpg")]
    assert len(list(ann.iterdir())) == 3  # one annotation per input, odd names included
    assert main(args + ["--resume"]) == 0  # nothing redone, nothing lost
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        assert [r["input"] for r in csv.DictReader(fh)] == names


@pytest.mark.media
@pytest.mark.parametrize("state", [["--smooth", "0.3"], ["--calibrate"]], ids=["smooth", "calibrate"])
def test_resumed_state_annotated_video_and_plot_equal_an_uninterrupted_run(state, media, model_path, tmp_path,
                                                                          monkeypatch):
    import cv2

    import rtatl_sdk.apps.runner as runner

    plotted = []
    monkeypatch.setattr(runner, "au_heatmap", lambda series, aus, path, title: plotted.append(len(series)))
    video = media / "single_face.mp4"
    common = [str(video), "--model", str(model_path), "--quiet", *state]
    whole = tmp_path / "whole.csv"
    assert main(common + ["--out", str(whole)]) == 0
    part = tmp_path / "part.csv"
    outs = ["--annotate", str(tmp_path / "ann"), "--plot", str(tmp_path / "p.png")]
    assert main(common + ["--out", str(part), "--max-frames", "30", *outs]) == 0  # as if killed at frame 30
    assert main(common + ["--out", str(part), "--resume", *outs]) == 0
    a, b = list(csv.DictReader(whole.open())), list(csv.DictReader(part.open()))
    assert [r["frame"] for r in b] == [str(i) for i in range(72)]
    assert a == b  # smoothed / calibrated values continue exactly
    cap = cv2.VideoCapture(str(tmp_path / "ann" / "single_face_annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 72  # the annotated video holds every frame
    cap.release()
    assert plotted == [30, 72]  # the resumed plot covers the whole clip


# ---------------------------------------------------------------- properties
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def option_sets(draw):
    opts = []
    if draw(st.booleans()):
        opts += ["--smooth", repr(draw(st.floats(-2, 3, allow_nan=False)))]
    if draw(st.booleans()):
        opts += ["--camera", str(draw(st.integers(-3, 3)))]
    if draw(st.booleans()):
        opts += ["--max-frames", str(draw(st.integers(-2, 5)))]
    if draw(st.booleans()):
        opts += ["--threads", str(draw(st.integers(-2, 4)))]
    if draw(st.booleans()):
        opts += ["--out", "{tmp}/" + draw(st.sampled_from(["r.csv", "r.jsonl", "r.txt", "keep.csv/x.csv", "d/r.csv"]))]
    if draw(st.booleans()):
        opts += ["--plot", "{tmp}/" + draw(st.sampled_from(["p.png", "p.jpg", "keep.csv/p.png"]))]
    if draw(st.booleans()):
        opts += ["--annotate", "{tmp}/" + draw(st.sampled_from(["ann", "a.mp4", "keep.csv", "x.mp4"]))]
    if draw(st.booleans()):
        opts.append("--resume")
    return opts


@PROPS
@given(opts=option_sets(), n_inputs=st.integers(0, 2))
def test_any_option_combination_ends_in_a_result_or_one_line_and_touches_nothing(opts, n_inputs, tmp_path_factory):
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("opts")
    keep = tmp / "keep.csv"
    keep.write_text("previous results\n")
    inputs = []
    for k in range(n_inputs):
        p = tmp / f"in{k}.mp4"
        p.write_bytes(b"not a video")
        inputs.append(str(p))
    argv = inputs + [o.format(tmp=tmp) for o in opts] + ["--model", str(tmp / "missing.onnx")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    assert code == 2, (argv, err.getvalue())  # the model is missing: every run ends before any frame
    lines = [x for x in err.getvalue().splitlines() if x.strip() and not x.startswith(("usage:", " "))]
    assert len(lines) == 1, err.getvalue()
    assert keep.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp.iterdir()) == sorted(["keep.csv"] + [Path(i).name for i in inputs])


@PROPS
@given(raw=st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")))
def test_any_file_name_bytes_round_trip_through_resume(raw, tmp_path_factory):

    from rtatl_sdk.io.writers import RowWriter

    tmp = tmp_path_factory.mktemp("names")
    name = str(tmp / os.fsdecode(raw))
    for suffix in (".csv", ".jsonl"):
        path = tmp / f"r{suffix}"
        w = RowWriter(path, ["AU01"])
        for frame in range(3):
            w.write_rows([{"input": name, "frame": frame, "timestamp": 0.0, "success": 0}])
        w.close()
        w = RowWriter(path, ["AU01"], resume=True, inputs=[name])
        assert w.last_done == {name: 1}
        w.close()


@pytest.mark.parametrize("kind", ["fifo", "devnull", "dangling"])
def test_outputs_that_are_not_regular_files_are_refused(kind, inputs, tmp_path, capsys):
    """--out a named pipe or a link to /dev/null would block or swallow the rows; an --annotate
    that is a broken link cannot be made: each is one line, exit 2, before anything is written."""

    target = tmp_path / ("r.csv" if kind != "dangling" else "ann")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "devnull":
        target.symlink_to("/dev/null")
    else:
        target.symlink_to(tmp_path / "nowhere")
    opt = "--annotate" if kind == "dangling" else "--out"
    assert main([str(inputs / "a.jpg"), opt, str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert opt in err and len(err.splitlines()) == 1, err


def test_resume_without_the_settings_record_or_with_a_broken_one_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main([str(inputs / "a.jpg"), "--out", str(out), "--quiet"]) == 0
    side = tmp_path / ".r.csv.settings.json"
    before = out.read_bytes()
    for record in (None, "[]", "null"):
        if record is None:
            side.unlink()
        else:
            side.write_text(record)
        assert main([str(inputs / "a.jpg"), "--out", str(out), "--resume", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "settings record" in err and out.read_bytes() == before


def test_an_unreadable_folder_is_named_and_the_search_goes_on(inputs, monkeypatch):
    """A folder that cannot be listed (no permission: simulated, as the tests run as root) is named
    with its reason; the other folders are still searched."""

    from rtatl_sdk.apps.inputs import expand_inputs

    (inputs / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, bad = expand_inputs([str(inputs)])
    assert sorted(f.name for f in files) == ["a.jpg", "a.jpg"]
    assert [(Path(n).name, r) for n, r in bad] == [("locked", "cannot be searched (Permission denied)")]


def test_two_links_to_one_file_get_two_output_names(tmp_path):
    from rtatl_sdk.apps.inputs import output_names

    (tmp_path / "x.jpg").write_bytes(b"x")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jpg").symlink_to(tmp_path / "x.jpg")
    names = output_names([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"], lambda f: ".csv")
    assert len(set(names.values())) == 2, names


def test_a_resumed_run_with_a_report_keeps_the_pages_of_inputs_finished_before(inputs, tmp_path):
    out, rep = tmp_path / "r.csv", tmp_path / "rep"
    pytest.importorskip("plotly")
    assert main([str(inputs / "a.jpg"), "--out", str(out), "--quiet"]) == 0
    rows = out.read_bytes()
    assert main([str(inputs / "a.jpg"), str(inputs / "sub" / "a.jpg"), "--out", str(out), "--resume", "--report",
                 str(rep), "--quiet"]) == 0
    index = (rep / "index.html").read_text()
    assert index.count("<tr><td><a href=") == 2  # the input finished before has its page too
    assert out.read_bytes().startswith(rows) and len(list(csv.DictReader(open(out, newline="")))) == 1 + 5


@pytest.mark.media
def test_plots_of_several_videos_never_overwrite_an_input_or_each_other(det, media, tmp_path):
    from rtatl_sdk.apps.inputs import plot_names

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


@pytest.mark.media
def test_resume_with_other_settings_refuses_in_one_line_and_touches_nothing(det, media, tmp_path, capsys):
    from rtatl_sdk.apps.cli import main
    from rtatl_sdk.apps.settings import settings_file

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


def test_symlinked_folders_are_searched_and_broken_links_and_loops_named(tmp_path):
    from rtatl_sdk.apps.inputs import expand_inputs

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


def test_out_json_is_refused_with_the_name_to_use(tmp_path, capsys):
    from rtatl_sdk.apps.cli import main

    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main([str(tmp_path / "a.jpg"), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert ".jsonl" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_an_out_dir_inside_an_input_folder_is_not_read_as_inputs(tmp_path):
    from rtatl_sdk.apps.inputs import expand_inputs

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
