"""``rtatl-detect``: AUs of faces in images, folders, videos and cameras.

    rtatl-detect photo.jpg clips/ talk.mp4 --out results.csv --annotate out/ --plot au.png
    rtatl-detect --camera 0 --out live.jsonl --max-frames 300

One row per face per frame: input, frame, timestamp, success, face, track_id, x, y, w, h,
quality, then the AU columns (AU01_p probability ... AU01_c occurrence, empty where the AU's
region lies outside the frame), then ``error``. A processed image or frame without a face has
one row with success 0; a video frame without a picture (undecodable, or never delivered by a
cut file) has one row with success 0 and ``error`` saying why. Files that cannot be read are named
on stderr with the reason; the exit status is 1 when any input or frame failed, 0 otherwise.
With ``--resume`` an interrupted run continues where its output file ends (no gaps, no
duplicates).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .engine import BACKENDS
from .errors import InputError, RTATLError
from .face.tracking import DETECT_EVERY
from .images import VIDEO_EXTENSIONS as VIDEO_EXT
from .runner import SKIPPED_OUTPUT, InputRunner, annotation_names, expand_inputs

__all__ = ["annotation_names", "expand_inputs", "main"]


def check_options(args, files: list[Path]) -> None:
    """Every option checked before any output is touched; a mistake raises InputError (exit 2)."""
    if args.smooth is not None and not 0.0 < args.smooth <= 1.0:
        raise InputError(f"--smooth {args.smooth}", "must lie in (0, 1]")
    if args.camera is not None and args.camera < 0:
        raise InputError(f"--camera {args.camera}", "a camera index is 0 or more")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames {args.max_frames}", "must be at least 1")
    if args.threads < 0:
        raise InputError(f"--threads {args.threads}", "must be 0 (all cores) or more")
    if args.detect_every < 1:
        raise InputError(f"--detect-every {args.detect_every}", "must be 1 (every frame) or more")
    check_cluster_options(args)
    if args.resume and not args.out:
        raise InputError("--resume", "needs --out: the file to continue")
    inputs = {f.resolve() for f in files}
    for opt, value, suffixes in (("--out", args.out, (".csv", ".jsonl", ".json")), ("--plot", args.plot, (".png",))):
        if not value:
            continue
        p = Path(value)
        if p.suffix.lower() not in suffixes:
            raise InputError(f"{opt} {p}", f"must end in {' or '.join(suffixes)}")
        if p.resolve() in inputs:
            raise InputError(f"{opt} {p}", "is one of the inputs; it would be overwritten")
        _check_writable_parent(opt, p)
    if args.annotate:
        ann = Path(args.annotate)
        if ann.suffix.lower() in VIDEO_EXT:
            if len(files) + (args.camera is not None) != 1 or (files and files[0].suffix.lower() not in VIDEO_EXT):
                raise InputError(f"--annotate {ann}", "a video file name takes exactly one video or camera input; "
                                 "give a folder for several inputs or for images")
            if ann.resolve() in inputs:
                raise InputError(f"--annotate {ann}", "is one of the inputs; it would be overwritten")
            _check_writable_parent("--annotate", ann)
        elif ann.exists() and not ann.is_dir():
            raise InputError(f"--annotate {ann}", "exists and is not a folder")
        else:
            _check_writable_parent("--annotate", ann / "x")


def check_cluster_options(args) -> None:
    if args.cluster is None:
        if args.out_dir or args.workers is not None:
            raise InputError("--out-dir" if args.out_dir else "--workers", "is an option of --cluster")
        return
    if not args.out_dir:
        raise InputError("--cluster", "needs --out-dir: the folder for one output per input and the manifest")
    for opt, value in (("--out", args.out), ("--annotate", args.annotate), ("--plot", args.plot),
                       ("--camera", args.camera), ("--resume", args.resume or None)):
        if value is not None:
            raise InputError(f"--cluster with {opt}", "not supported: a cluster run writes one file per input to "
                             "--out-dir and resumes by running it again")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}", "must be 1 or more")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise InputError(f"--out-dir {args.out_dir}", "exists and is not a folder")


def run_cluster(args) -> int:
    """``--cluster``: every input on a Ray cluster, one output per input and a manifest."""
    from .cluster import process_archive

    detector = {"smoothing": args.smooth, "calibration": args.calibrate, "detect_every": args.detect_every,
                "reuse": args.reuse, "backend": args.backend, "max_frames": args.max_frames}
    address = None if args.cluster == "local" else args.cluster
    entries = process_archive(args.inputs, args.out_dir, address, model=args.model, detector=detector,
                              workers=args.workers, progress=not args.quiet)
    failed = {k: e for k, e in entries.items() if e["status"] != "done"}
    for name, e in failed.items():
        print(f"rtatl-detect: {name}: {e.get('error')}", file=sys.stderr)
    done = len(entries) - len(failed)
    print(f"rtatl-detect: {done} of {len(entries)} inputs done; manifest {Path(args.out_dir) / 'manifest.json'}",
          file=sys.stderr)
    return 1 if failed else 0


def _check_writable_parent(opt: str, path: Path) -> None:
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{opt} {path}", f"{parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise InputError(f"{opt} {path}", f"{parent} is not writable")
            return


def run(args) -> int:
    from tqdm import tqdm

    from .detector import AUDetector
    from .writers import RowWriter

    files, bad = expand_inputs(args.inputs, (args.out, args.plot), args.annotate)
    check_options(args, files)
    if args.cluster is not None:
        return run_cluster(args)
    if not files and args.camera is None:
        for name, reason in bad:
            print(f"rtatl-detect: {name}: {reason}", file=sys.stderr)
        print("rtatl-detect: no usable input", file=sys.stderr)
        return 1
    det = AUDetector(args.model, smoothing=args.smooth, calibration=args.calibrate, threads=args.threads,
                     detect_every=args.detect_every, reuse=args.reuse, backend=args.backend)
    names = [str(f) for f in files] + ([f"camera:{args.camera}"] if args.camera is not None else [])
    writer = None
    sources: list = list(files) + ([args.camera] if args.camera is not None else [])
    try:
        writer = RowWriter(args.out, det.aus, resume=args.resume, inputs=names) if args.out else None
        job = InputRunner(args, det, writer, Path(args.annotate) if args.annotate else None, annotation_names(files), len(sources))
        job.failures += [b for b in bad if b[1] != SKIPPED_OUTPUT]  # our own outputs are not failures
        for src in tqdm(sources, desc="rtatl-detect", unit="input", disable=args.quiet or len(sources) < 2):
            name = f"camera:{src}" if isinstance(src, int) else str(src)
            try:
                if isinstance(src, int) or src.suffix.lower() in VIDEO_EXT:
                    job.video(src, name)
                else:
                    job.image(src, name)
            except InputError as exc:
                job.failures.append((name, exc.reason))
                print(f"rtatl-detect: {name}: {exc.reason}", file=sys.stderr)
    finally:
        if writer:
            writer.close()
        det.close()
    for name, reason in bad:
        print(f"rtatl-detect: {name}: {reason}", file=sys.stderr)
    return 1 if job.failures else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rtatl-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="images, videos or folders")
    ap.add_argument("--out", type=Path, help="results file (.csv or .jsonl); without it, results are printed")
    ap.add_argument("--model", type=Path, help="AU model (.onnx or .engine); default: the bundled model")
    ap.add_argument("--annotate", help="folder (images, videos) or .mp4 file for annotated output")
    ap.add_argument("--plot", help="PNG of AU probabilities over time (videos)")
    ap.add_argument("--camera", type=int, help="read this camera index")
    ap.add_argument("--max-frames", type=int, help="stop each video/camera after this many frames")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run writing to --out")
    ap.add_argument("--smooth", type=float, help="temporal smoothing factor in (0, 1] (per track)")
    ap.add_argument("--calibrate", action="store_true", help="per-person neutral baseline learned per track")
    ap.add_argument("--threads", type=int, default=0, help="AU engine threads (0: one per core)")
    ap.add_argument("--backend", choices=BACKENDS, default="onnxruntime",
                    help="AU engine for .onnx models (openvino: pip install 'rtatl[openvino]')")
    ap.add_argument("--detect-every", type=int, default=DETECT_EVERY, metavar="K",
                    help=f"videos: run the face detector every K frames and track faces by their landmarks in "
                         f"between (default {DETECT_EVERY}); 1 detects on every frame")
    ap.add_argument("--no-reuse", dest="reuse", action="store_false",
                    help="videos: run the AU model on every frame (by default a track's AU result is reused for up "
                         "to 3 frames while its aligned face has barely changed)")
    ap.add_argument("--cluster", nargs="?", const="local", metavar="ADDRESS",
                    help="run on a Ray cluster (a local one without ADDRESS; pip install 'rtatl[cluster]'): one "
                         "output per input in --out-dir and manifest.json; run again to redo what failed")
    ap.add_argument("--out-dir", help="with --cluster: the folder for the outputs and the manifest")
    ap.add_argument("--workers", type=int, help="with --cluster: how many AU detectors (default: one per CPU or GPU)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--verbose", action="store_true", help="log details, and MediaPipe/TensorFlow Lite start-up lines")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.inputs and args.camera is None:
        build_parser().error("give at least one input or --camera N")
    try:
        return run(args)
    except RTATLError as exc:
        print(f"rtatl-detect: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
