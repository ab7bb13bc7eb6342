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
