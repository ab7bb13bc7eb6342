"""AU extraction over an archive of videos and images on a Ray cluster (``pip install 'rtatl[cluster]'``).

    from rtatl_sdk.cluster import process_archive
    manifest = process_archive(["archive/"], "results/", address=None)   # a local cluster
    rtatl-detect --cluster [ADDRESS] archive/ --out-dir results/

One task per video and one per chunk of images; each Ray worker holds one ``AUDetector`` (a GPU
per worker where the cluster has GPUs). Every input gets its own output file (the rows
``rtatl-detect`` would write for it alone), written to a temporary name and renamed when the
input is finished, so a file in the output folder is always complete. ``manifest.json`` says
for every input whether it is done (its output, frames, rows, seconds, and any frames without a
picture) or failed and why; it is rewritten atomically after each input. Running the same
command again skips the inputs the manifest has done (and whose output is there) and redoes
the failed and unfinished ones. A worker killed mid-video is restarted by Ray and its task
redone from the start of that input: finished inputs are kept, no row is written twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from argparse import Namespace
from pathlib import Path

from .errors import InputError, RTATLError
from .face.tracking import DETECT_EVERY
from .files import atomic_write_bytes
from .images import VIDEO_EXTENSIONS
from .runner import InputRunner, expand_inputs, output_names

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
LOCK = ".rtatl-cluster.lock"
#: Ray restarts a killed worker and retries its task this many times before the input fails.
TASK_RETRIES = 2


def _options(detector: dict | None) -> Namespace:
    """The per-input options of InputRunner (those of rtatl-detect that apply to one output)."""
    d = dict(detector or {})
    return Namespace(smooth=d.get("smoothing"), calibrate=bool(d.get("calibration")), plot=None, quiet=True,
                     max_frames=d.pop("max_frames", None), detect_every=d.get("detect_every", DETECT_EVERY),
                     reuse=bool(d.get("reuse", True)), camera=None)


class _Counting:
    """A RowWriter that counts the frames (write_rows calls) and rows it wrote."""

    def __init__(self, writer):
        self.writer, self.frames, self.rows = writer, 0, 0
        self.last_done = writer.last_done

    def write_rows(self, rows):
        self.frames += 1
        self.rows += len(rows)
        self.writer.write_rows(rows)


class Worker:
    """Runs inputs with one AUDetector; a Ray actor in a cluster, a plain object in tests."""

    def __init__(self, model: str | None, detector: dict | None, threads: int = 1):
        from .detector import AUDetector

        opts = {k: v for k, v in (detector or {}).items() if k != "max_frames"}
        self.det = AUDetector(model, threads=threads, **opts)
        self.options = _options(detector)

    def pid(self) -> int:
        return os.getpid()

    def process(self, src: str, name: str, out: str) -> dict:
        """One input -> its output file (complete or absent) and its manifest entry."""
        from .writers import RowWriter

        path, out_path = Path(src), Path(out)
        tmp = out_path.with_name(f".{out_path.stem}.part-{os.getpid()}{out_path.suffix}")
        t = time.perf_counter()
        try:
            writer = _Counting(RowWriter(tmp, self.det.aus))
            try:
                job = InputRunner(self.options, self.det, writer, None, {}, 1)
                (job.video if path.suffix.lower() in VIDEO_EXTENSIONS else job.image)(path, name)
            finally:
                writer.writer.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out_path)
        except RTATLError as exc:
            tmp.unlink(missing_ok=True)
            return {"status": "failed", "error": str(getattr(exc, "reason", exc))}
        entry = {"status": "done", "output": out_path.name, "frames": writer.frames, "rows": writer.rows,
                 "seconds": round(time.perf_counter() - t, 2)}
        if job.failures:
            entry["warnings"] = [reason for _, reason in job.failures]
        return entry

    def process_many(self, items: list[tuple[str, str, str]]) -> list[dict]:
        return [self.process(*item) for item in items]


def _units(files: list[Path], names: dict[Path, str], images_per_task: int) -> list[list[tuple[str, str, str]]]:
    """Tasks: one per video, one per chunk of ``images_per_task`` images; items (src, name, output file)."""
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTENSIONS]
    images = [f for f in files if f.suffix.lower() not in VIDEO_EXTENSIONS]
    units = [[(str(v), str(v), names[v])] for v in videos]
    for i in range(0, len(images), images_per_task):
        units.append([(str(f), str(f), names[f]) for f in images[i:i + images_per_task]])
    return units


class Manifest:
    """``manifest.json`` of an output folder: input name -> entry; written atomically."""

    def __init__(self, folder: Path):
        self.path = folder / MANIFEST
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())["inputs"]
            except (ValueError, KeyError, TypeError):
                raise InputError(str(self.path), "is not a manifest written by rtatl-detect --cluster; "
                                 "use another --out-dir") from None

    def done(self, name: str) -> bool:
        e = self.entries.get(name)
        return bool(e and e.get("status") == "done" and (self.path.parent / e["output"]).is_file())

    def record(self, name: str, entry: dict) -> None:
        self.entries[name] = entry
        atomic_write_bytes(self.path, json.dumps({"inputs": self.entries}, indent=1).encode())


def _lock(folder: Path):
    """An exclusive lock on the output folder: a second run on it is refused."""
    import fcntl

    fh = open(folder / LOCK, "a")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise InputError(str(folder), "another rtatl-detect --cluster run is writing this folder") from None
    return fh


def _connect(address: str | None):
    try:
        import ray
    except ImportError:
        raise InputError("--cluster", "needs Ray: pip install 'rtatl[cluster]'") from None
    if not ray.is_initialized():  # "local": always a new cluster of this machine's CPUs, never one found running
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                 **({} if address else {"num_cpus": os.cpu_count()}))
    return ray


def process_archive(inputs: list, out_dir, address: str | None = None, *, model=None, detector: dict | None = None,
                    workers: int | None = None, images_per_task: int = 32, progress: bool = True) -> dict:
    """Process ``inputs`` (files and folders) on a Ray cluster into ``out_dir``: one ``.csv`` per
    input and ``manifest.json``. ``address``: a Ray cluster (``"auto"``, ``"ray://host:10001"``);
    None starts a local one (or uses the Ray session this process already has). ``detector``:
    AUDetector options (``smoothing``, ``calibration``, ``detect_every``, ``reuse``, ``backend``)
    and ``max_frames``. ``workers``: how many AUDetectors (default: one per CPU, or per GPU where
    the cluster has GPUs). Returns the manifest's entries (input name -> entry)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        manifest = Manifest(out)
        files, bad = expand_inputs([str(i) for i in inputs], ())
        for name, reason in bad:
            manifest.record(name, {"status": "failed", "error": reason})
        names = output_names(files, lambda f: ".csv")
        todo = [u for u in _units(files, names, images_per_task)
                if not all(manifest.done(name) for _, name, _ in u)]
        todo = [[(s, n, str(out / o)) for s, n, o in u if not manifest.done(n)] for u in todo]
        if todo:
            _run(_connect(address), todo, manifest, model, detector, workers, progress)
        for stale in out.glob(".*.part-*"):  # left by workers killed mid-input (their task was redone)
            stale.unlink(missing_ok=True)
        return dict(manifest.entries)


def _run(ray, todo, manifest: Manifest, model, detector, workers, progress: bool) -> None:
    from tqdm import tqdm

    gpus = ray.cluster_resources().get("GPU", 0)
    n = workers or int(gpus or ray.cluster_resources().get("CPU", 1))
    actor = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=TASK_RETRIES)(Worker)
    pool = [actor.remote(None if model is None else str(model), detector) for _ in range(max(1, min(n, len(todo))))]
    queue, running = list(reversed(todo)), {}
    total = sum(len(u) for u in todo)
    bar = tqdm(total=total, desc="rtatl-detect --cluster", unit="input", disable=not progress)
    frames, t0 = 0, time.perf_counter()
    for a in pool:
        if queue:
            unit = queue.pop()
            running[a.process_many.remote(unit)] = (a, unit)
    while running:
        (ref,), _ = ray.wait(list(running), num_returns=1)
        a, unit = running.pop(ref)
        try:
            entries = ray.get(ref)
        except Exception as exc:  # the worker died more often than Ray retries, or raised
            reason = f"worker failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            entries = [{"status": "failed", "error": reason}] * len(unit)
        for (_, name, _), entry in zip(unit, entries):
            manifest.record(name, entry)
            frames += entry.get("frames", 0)
        bar.update(len(unit))
        bar.set_postfix(fps=f"{frames / max(1e-9, time.perf_counter() - t0):.1f}")
        if queue:
            unit = queue.pop()
            running[a.process_many.remote(unit)] = (a, unit)
    bar.close()
    for a in pool:
        ray.kill(a)
