"""AU extraction over an archive of videos and images on a Ray cluster (``pip install 'rtatl[cluster]'``).

    from rtatl_sdk.apps.cluster import process_archive
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
from pathlib import Path

from .. import store
from ..errors import InputError, RTATLError
from ..io.files import atomic_write_bytes
from ..io.images import VIDEO_EXTENSIONS
from ..options import DetectorOptions
from .inputs import expand_inputs, output_names, path_hash
from .runner import InputRunner, RunOptions
from .settings import row_settings, settings_difference

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
LOCK = ".rtatl-cluster.lock"
#: Ray restarts a killed worker and retries its task this many times before the input fails.
TASK_RETRIES = 2


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

    def __init__(self, model: str | None, detector: dict | None, max_frames: int | None = None, threads: int = 1):
        from ..detector import AUDetector

        # options travel as plain data (checked on the driver by process_archive, again here)
        self.det = AUDetector(model, options=DetectorOptions.make(detector, threads=threads))
        self.options = RunOptions(max_frames=max_frames)

    def pid(self) -> int:
        return os.getpid()

    def process(self, src: str, name: str, out: str) -> dict:
        """One input -> its output file (complete or absent) and its manifest entry."""
        from ..io.writers import RowWriter

        path, out_path = Path(src), Path(out)
        tmp = out_path.with_name(f".{out_path.stem}.part-{os.getpid()}{out_path.suffix}")
        t = time.perf_counter()
        try:
            writer = _Counting(RowWriter(tmp, self.det))
            try:
                job = InputRunner(self.options, self.det, writer, None, {})
                (job.video if path.suffix.lower() in VIDEO_EXTENSIONS else job.image)(path, name)
            finally:
                writer.writer.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out_path)
        except RTATLError as exc:
            _remove(tmp)
            return {"status": "failed", "error": str(getattr(exc, "reason", exc))}
        except Exception as exc:  # a bug or a library's error on this input: this input fails, not its task
            _remove(tmp)
            log.exception("%s: failed", name)
            return {"status": "failed", "error": f"{type(exc).__name__}: {_first_line(exc)}"}
        entry = {"status": "done", "output": out_path.name, "frames": writer.frames, "rows": writer.rows,
                 "seconds": round(time.perf_counter() - t, 2)}
        if job.failures:
            entry["warnings"] = [reason for _, reason in job.failures]
        return entry

    def process_many(self, items: list[tuple[str, str, str]]) -> list[dict]:
        return [self.process(*item) for item in items]


def _remove(path: Path) -> None:
    """Remove a failed input's partial output; one that cannot be removed (or never existed) is left."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _units(files: list[Path], names: dict[Path, str], images_per_task: int) -> list[list[tuple[str, str, str]]]:
    """Tasks: one per video, one per chunk of ``images_per_task`` images; items (src, name, output file)."""
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTENSIONS]
    images = [f for f in files if f.suffix.lower() not in VIDEO_EXTENSIONS]
    units = [[(str(v), str(v), names[v])] for v in videos]
    for i in range(0, len(images), images_per_task):
        units.append([(str(f), str(f), names[f]) for f in images[i:i + images_per_task]])
    return units


class Manifest:
    """``manifest.json`` of an output folder: input name -> entry; written atomically. A done
    entry records the settings its output was made with (``row_settings``)."""

    def __init__(self, folder: Path):
        self.path = folder / MANIFEST
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                entries = json.loads(self.path.read_text())["inputs"]
                if not isinstance(entries, dict) or not all(isinstance(e, dict) and isinstance(e.get("status"), str)
                                                            and (e["status"] != "done" or isinstance(e.get("output"), str))
                                                            for e in entries.values()):
                    raise TypeError("entries of another shape")
                self.entries = entries
            except (ValueError, KeyError, TypeError, OSError):
                raise InputError(str(self.path), "is not a manifest written by rtatl-detect --cluster (edited, or "
                                 "another program's); use another --out-dir or remove it") from None

    def done(self, name: str, settings: dict | None = None) -> bool:
        """Done, its output there, and (with ``settings``) made with those settings."""
        e = self.entries.get(name)
        if not (e and e.get("status") == "done" and (self.path.parent / e["output"]).is_file()):
            return False
        return settings is None or e.get("settings") == settings

    def redo_reason(self, name: str, settings: dict) -> str | None:
        """Why a done input is redone: it was made with other settings (None when it is not)."""
        e = self.entries.get(name)
        if e and e.get("status") == "done" and (self.path.parent / e["output"]).is_file() and e.get("settings") != settings:
            return "made with other settings (" + settings_difference(e.get("settings") or {}, settings) + "); redone"
        return None

    def outputs(self) -> dict[str, str]:
        """output file name -> the input it belongs to, for every entry that has one."""
        return {e["output"]: n for n, e in self.entries.items() if e.get("output")}

    def record(self, name: str, entry: dict) -> None:
        self.entries[name] = entry
        try:
            atomic_write_bytes(self.path, json.dumps({"inputs": self.entries}, indent=1).encode())
        except OSError as exc:
            raise InputError(str(self.path), f"cannot be written ({exc.strerror or exc})") from None


def _lock(folder: Path):
    """An exclusive lock on the output folder: a second run on it is refused."""
    import fcntl

    try:
        fh = open(folder / LOCK, "a")
    except OSError as exc:
        raise InputError(f"--out-dir {folder}", f"cannot be written ({exc.strerror or exc})") from None
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
        try:
            ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                     **({} if address else {"num_cpus": os.cpu_count()}))
        except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ValueError from Ray
            raise InputError(f"--cluster {address or 'local'}", f"cannot start or reach the Ray cluster "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
    return ray


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one plain line: ANSI colours and Ray's banners left out."""
    import re

    cause = getattr(exc, "cause", None)  # Ray's RayTaskError wraps the worker's own exception
    if isinstance(cause, BaseException) and cause is not exc:
        return f"{type(cause).__name__}: {_first_line(cause, limit)}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("ray::", "Traceback"))]
    return (lines[-1] if lines else type(exc).__name__)[:limit]


def process_archive(inputs: list, out_dir, address: str | None = None, *, model=None,
                    detector: DetectorOptions | dict | None = None, max_frames: int | None = None,
                    workers: int | None = None, images_per_task: int = 32, progress: bool = True) -> dict:
    """Process ``inputs`` (files and folders) on a Ray cluster into ``out_dir``: one ``.csv`` per
    input and ``manifest.json``. ``address``: a Ray cluster (``"auto"``, ``"ray://host:10001"``);
    None starts a local one (or uses the Ray session this process already has). ``detector``:
    the AUDetector's options (``DetectorOptions`` or a dict of its fields: ``smoothing``,
    ``calibration``, ``detect_every``, ``reuse``, ``backend``, ...; checked here, before any worker
    starts; a dict's ``max_frames`` key is taken as ``max_frames``). ``max_frames``: stop each
    video after this many frames. ``workers``: how many AUDetectors (default: one per CPU, or per GPU where
    the cluster has GPUs). Returns the manifest's entries (input name -> entry)."""
    if isinstance(detector, dict) and "max_frames" in detector:
        detector = dict(detector)
        max_frames = detector.pop("max_frames")
    try:
        run = RunOptions(max_frames=max_frames)  # checked before anything is written
    except ValueError:  # pydantic's ValidationError
        raise InputError(f"max_frames={max_frames!r}", "must be a whole number of frames, 1 or more, or None") from None
    options = DetectorOptions.make(detector)
    opts = options.model_dump(exclude={"threads"})  # a worker uses one thread
    settings = row_settings(options, model, store.au_model_path(model) if model is not None else None,
                            max_frames=run.max_frames)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out-dir {out}", f"cannot be made ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"--out-dir {out}", "is not writable")
    with _lock(out):
        manifest = Manifest(out)
        files, bad = expand_inputs([str(i) for i in inputs], (), out_dir=out)
        for name, reason in bad:
            manifest.record(name, {"status": "failed", "error": reason})
        names = _names(files, manifest)
        for f in files:
            why = manifest.redo_reason(str(f), settings)
            if why:
                log.warning("%s: %s", f, why)
        todo = [[(s, n, str(out / o)) for s, n, o in u if not manifest.done(n, settings)]
                for u in _units(files, names, images_per_task)]
        todo = [u for u in todo if u]
        if todo:
            _run(_connect(address), todo, manifest, model, opts, run.max_frames, workers, progress, settings)
        for stale in out.glob(".*.part-*"):  # left by workers killed mid-input (their task was redone)
            stale.unlink(missing_ok=True)
        return dict(manifest.entries)


def _names(files: list[Path], manifest: Manifest) -> dict[Path, str]:
    """Output names (``output_names``), with a hash of the path also where an earlier run into the
    folder gave that name to another input (a second archive whose files share names)."""
    names = output_names(files, lambda f: ".csv")
    owner = manifest.outputs()
    for f, n in names.items():
        if owner.get(n, str(f)) != str(f):
            names[f] = f"{Path(n).stem}_{path_hash(f)}.csv"
    return names


def _run(ray, todo, manifest: Manifest, model, detector: dict, max_frames: int | None, workers, progress: bool,
         settings: dict | None = None) -> None:
    from tqdm import tqdm

    gpus = ray.cluster_resources().get("GPU", 0)
    n = workers or int(gpus or ray.cluster_resources().get("CPU", 1))
    actor = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=TASK_RETRIES)(Worker)
    pool = [actor.remote(None if model is None else str(model), detector, max_frames)
            for _ in range(max(1, min(n, len(todo))))]
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
            reason = f"worker failed: {_first_line(exc)}"
            entries = [{"status": "failed", "error": reason}] * len(unit)
        for (_, name, _), entry in zip(unit, entries):
            if entry.get("status") == "done" and settings is not None:
                entry = {**entry, "settings": settings}
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
