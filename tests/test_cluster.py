"""Archive processing on a local Ray cluster: per-input outputs equal to a single-process run, a
killed worker loses and duplicates nothing, corrupt inputs are reported while the rest finish."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtatl_sdk.errors import InputError
from tests.helpers import REPO, wait_for

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _archive(media, tmp_path) -> Path:
    d = tmp_path / "archive"
    (d / "sub").mkdir(parents=True)
    for name in ("single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg", "single_face.mp4"):
        shutil.copy(media / name, d / name)
    shutil.copy(media / "single_face.jpg", d / "sub" / "single_face.jpg")  # same name, other folder
    return d


def test_outputs_equal_a_single_process_run_and_a_rerun_skips_them(local_ray, media, tmp_path):
    from rtatl_sdk.apps.cli import main
    from rtatl_sdk.apps.cluster import process_archive

    archive = _archive(media, tmp_path)
    single = tmp_path / "single.csv"
    assert main([str(archive), "--out", str(single), "--max-frames", "30", "--threads", "1", "--quiet"]) == 0
    out = tmp_path / "out"
    entries = process_archive([archive], out, detector={"max_frames": 30}, workers=2, progress=False)
    assert len(entries) == 5 and all(e["status"] == "done" for e in entries.values()), entries
    header, *rows = _rows(single)
    for name, e in entries.items():
        head, *mine = _rows(out / e["output"])
        assert head == header
        assert mine == [r for r in rows if r[0] == name], name
        assert e["rows"] == len(mine)
    assert entries[str(archive / "single_face.mp4")]["frames"] == 30
    assert len({e["output"] for e in entries.values()}) == 5  # two single_face.jpg: two files
    assert json.loads((out / "manifest.json").read_text())["inputs"] == entries
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.csv")}
    assert process_archive([archive], out, detector={"max_frames": 30}, progress=False) == entries
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.csv")} == stamps  # nothing redone


def test_corrupt_inputs_are_reported_while_the_others_finish(local_ray, media, tmp_path):
    from rtatl_sdk.apps.cluster import process_archive

    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(media / "single_face.jpg", d / "good.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    (d / "notes.txt").write_text("not media")
    entries = process_archive([d, tmp_path / "missing.mp4"], tmp_path / "out", progress=False)
    status = {Path(k).name: (e["status"], e.get("error", "")) for k, e in entries.items()}
    assert status["good.jpg"][0] == "done"
    for name in ("broken.jpg", "broken.mp4", "notes.txt", "missing.mp4"):
        assert status[name][0] == "failed" and status[name][1], (name, status[name])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".rtatl-cluster.lock", "good.csv", "manifest.json"]


def _worker_pids() -> list[int]:
    """Processes whose title Ray set to one of our Worker actors."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"ray::Worker" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="finds Ray's worker processes through /proc")
def test_a_killed_worker_and_an_interrupted_run_lose_and_duplicate_nothing(media, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(media / "WolfgangLanger_Pexels.mp4", archive / "long.mp4")
    shutil.copy(media / "single_face.mp4", archive / "short.mp4")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rtatl_sdk.apps.cli", "--cluster", "--out-dir", str(out), str(archive), "--workers", "1",
           "--max-frames", "150", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the worker is killed while its first video is half written
    assert wait_for(lambda: any(p.stat().st_size > 20000 for p in out.glob(".*.part-*")), proc, 300), proc.communicate()
    victims = _worker_pids()
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    entries = json.loads((out / "manifest.json").read_text())["inputs"]
    assert all(e["status"] == "done" for e in entries.values()), entries
    for e, frames in ((entries[str(archive / "long.mp4")], 150), (entries[str(archive / "short.mp4")], 72)):
        _, *rows = _rows(out / e["output"])
        keys = [(r[1], r[4]) for r in rows]  # (frame, face)
        assert len(keys) == len(set(keys)) and sorted({int(f) for f, _ in keys}) == list(range(frames))
    assert not list(out.glob(".*.part-*"))
    # the whole run interrupted mid-way, then run again: finished inputs are kept, the rest done once
    (out / "manifest.json").unlink()
    for p in out.glob("*.csv"):
        p.unlink()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (out / "manifest.json").is_file(), proc, 300)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the run stops, its local cluster with it
    proc.wait(timeout=120)
    first = json.loads((out / "manifest.json").read_text())["inputs"]
    kept = {k: (out / e["output"]).stat().st_mtime_ns for k, e in first.items() if e["status"] == "done"}
    time.sleep(0.05)
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    entries = json.loads((out / "manifest.json").read_text())["inputs"]
    assert len(entries) == 2 and all(e["status"] == "done" for e in entries.values())
    assert {k: (out / entries[k]["output"]).stat().st_mtime_ns for k in kept} == kept


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
    from rtatl_sdk.apps.inputs import MAX_OUTPUT_NAME

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


def test_cluster_flag_takes_a_folder_as_input_and_an_address_as_address():
    from rtatl_sdk.apps.cli import build_parser

    def parse(argv):
        a = build_parser().parse_args(argv)
        return a.cluster, [*getattr(a, "cluster_inputs", []), *a.inputs]

    assert parse(["--cluster", "archive/", "--out-dir", "results/"]) == ("local", ["archive/"])
    assert parse(["--cluster", "ray://head:10001", "/shared/archive", "--out-dir", "r"]) == ("ray://head:10001",
                                                                                            ["/shared/archive"])
    assert parse(["a/", "--cluster", "--out-dir", "r"]) == ("local", ["a/"])


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
