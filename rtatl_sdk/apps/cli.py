"""``rtatl-detect``: AUs of faces in images, folders, videos and cameras.

    rtatl-detect photo.jpg clips/ talk.mp4 --out results.csv --annotate out/ --plot au.png
    rtatl-detect --camera 0 --out live.jsonl --max-frames 300

One row per face per frame: input, frame, timestamp, success, face, track_id, x, y, w, h,
quality, then OpenFace 2.2's gaze and head-pose columns (gaze_0_x ... gaze_angle_y, pose_Tx ...
pose_Rz; empty where they cannot be computed), then the AU columns (AU01_p probability,
AU01_r intensity for a model with an intensity head, AU01_c occurrence, empty where the AU's
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

from ..errors import InputError, RTATLError
from ..io.images import VIDEO_EXTENSIONS
from ..io.openface import GROUPS as OPENFACE_GROUPS
from ..io.openface import check_groups
from ..options import DetectorOptions
from .inputs import SKIPPED_OUTPUT, annotation_names, expand_inputs, openface_names, plot_names, report_names
from .runner import InputRunner, OpenFaceOutput, RunOptions
from .settings import check_resume_settings, row_settings, settings_file, write_settings

__all__ = ["annotation_names", "expand_inputs", "main"]


def detector_options(args) -> DetectorOptions:
    """The ``DetectorOptions`` of the flags (``add_detector_flags``); a bad value names its flag."""
    return DetectorOptions.make(flags=True, **{name: getattr(args, name) for name in DetectorOptions.flag_fields()})


def add_detector_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per ``DetectorOptions`` field that has one (its ``flag``, help and default)."""
    for name, info in DetectorOptions.flag_fields().items():
        extra = info.json_schema_extra
        flag, kw = extra["flag"], {"dest": name, "help": info.description}
        if isinstance(info.default, bool):
            kw["action"] = "store_false" if info.default else "store_true"
        else:
            typ = next(t for t in (int, float, str) if t in _types(info.annotation))
            kw.update(type=typ, default=info.default, metavar=extra.get("metavar"))
        ap.add_argument(flag, **kw)


def _types(annotation) -> tuple:
    import typing

    return typing.get_args(annotation) or (annotation,)


def check_options(args, files: list[Path]) -> DetectorOptions:
    """Every option checked before any output is touched; a mistake raises InputError (exit 2).
    Returns the detector's options."""
    options = detector_options(args)
    if args.camera is not None and args.camera < 0:
        raise InputError(f"--camera {args.camera}", "a camera index is 0 or more")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames {args.max_frames}", "must be at least 1")
    check_cluster_options(args)
    if args.resume and not args.out:
        raise InputError("--resume", "needs --out: the file to continue")
    inputs = {f.resolve() for f in files}
    for opt, value, suffixes in (("--out", args.out, (".csv", ".jsonl")), ("--plot", args.plot, (".png",))):
        if not value:
            continue
        p = Path(value)
        if opt == "--out" and p.suffix.lower() == ".json":
            raise InputError(f"--out {p}", "results are JSON Lines (one object per row): name the file .jsonl")
        if p.suffix.lower() not in suffixes:
            raise InputError(f"{opt} {p}", f"must end in {' or '.join(suffixes)}")
        if p.resolve() in inputs:
            raise InputError(f"{opt} {p}", "is one of the inputs; it would be overwritten")
        if (p.exists() or p.is_symlink()) and not p.is_file():
            raise InputError(f"{opt} {p}", "exists and is not a regular file (a folder, pipe, device or broken link)")
        _check_writable_parent(opt, p)
    files_out = {Path(v).resolve() for v in (args.out, args.plot) if v}
    for opt, value in (("--annotate", args.annotate), ("--report", args.report), ("--openface", args.openface)):
        if not value:
            continue
        if Path(value).is_symlink() and not Path(value).exists():
            raise InputError(f"{opt} {value}", "is a broken symbolic link")
        if Path(value).resolve() in files_out:
            raise InputError(f"{opt} {value}", "is also the --out or --plot file")
    if args.annotate:
        ann = Path(args.annotate)
        if ann.suffix.lower() in VIDEO_EXTENSIONS:
            if len(files) + (args.camera is not None) != 1 or (files and files[0].suffix.lower() not in VIDEO_EXTENSIONS):
                raise InputError(f"--annotate {ann}", "a video file name takes exactly one video or camera input; "
                                 "give a folder for several inputs or for images")
            if ann.resolve() in inputs:
                raise InputError(f"--annotate {ann}", "is one of the inputs; it would be overwritten")
            _check_writable_parent("--annotate", ann)
        elif ann.exists() and not ann.is_dir():
            raise InputError(f"--annotate {ann}", "exists and is not a folder")
        else:
            _check_writable_parent("--annotate", ann / "x")
    if args.report:
        rep = Path(args.report)
        if rep.exists() and not rep.is_dir():
            raise InputError(f"--report {rep}", "exists and is not a folder")
        _check_writable_parent("--report", rep / "x")
    if args.openface:
        of = Path(args.openface)
        if of.exists() and not of.is_dir():
            raise InputError(f"--openface {of}", "exists and is not a folder (OpenFace writes one CSV per input into it)")
        _check_writable_parent("--openface", of / "x")
        check_groups(args.openface_groups)
    elif args.openface_spaced or args.openface_groups != list(OPENFACE_GROUPS):
        raise InputError("--openface-spaced" if args.openface_spaced else "--openface-groups", "is an option of --openface")
    return options


def check_cluster_options(args) -> None:
    if args.cluster is None:
        if args.out_dir or args.workers is not None:
            raise InputError("--out-dir" if args.out_dir else "--workers", "is an option of --cluster")
        return
    if not args.out_dir:
        raise InputError("--cluster", "needs --out-dir: the folder for one output per input and the manifest")
    for opt, value in (("--out", args.out), ("--annotate", args.annotate), ("--plot", args.plot), ("--report", args.report),
                       ("--openface", args.openface),
                       ("--camera", args.camera), ("--resume", args.resume or None)):
        if value is not None:
            raise InputError(f"--cluster with {opt}", "not supported: a cluster run writes one file per input to "
                             "--out-dir and resumes by running it again")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}", "must be 1 or more")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise InputError(f"--out-dir {args.out_dir}", "exists and is not a folder")


def run_cluster(args, options: DetectorOptions) -> int:
    """``--cluster``: every input on a Ray cluster, one output per input and a manifest."""
    from .cluster import process_archive

    address = None if args.cluster == "local" else args.cluster
    entries = process_archive(args.inputs, args.out_dir, address, model=args.model, detector=options,
                              max_frames=args.max_frames, workers=args.workers, progress=not args.quiet)
    failed = {k: e for k, e in entries.items() if e["status"] != "done"}
    for name, e in failed.items():
        print(f"rtatl-detect: {name}: {e.get('error')}", file=sys.stderr)
    warned = {k: e for k, e in entries.items() if e["status"] == "done" and e.get("warnings")}
    for name, e in warned.items():  # done, with frames that had no picture: as a run without --cluster, exit 1
        print(f"rtatl-detect: {name}: {'; '.join(e['warnings'])}", file=sys.stderr)
    done = len(entries) - len(failed)
    print(f"rtatl-detect: {done} of {len(entries)} inputs done; manifest {Path(args.out_dir) / 'manifest.json'}",
          file=sys.stderr)
    return 1 if failed or warned else 0


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

    from ..detector import AUDetector
    from ..io.writers import RowWriter

    own = (args.out, args.plot, settings_file(Path(args.out)) if args.out else None)
    files, bad = expand_inputs(args.inputs, own, args.annotate, report=args.report, openface=args.openface)
    options = check_options(args, files)
    if args.cluster is not None:
        return run_cluster(args, options)
    if not files and args.camera is None:
        for name, reason in bad:
            print(f"rtatl-detect: {name}: {reason}", file=sys.stderr)
        print("rtatl-detect: no usable input", file=sys.stderr)
        return 1
    det = AUDetector(args.model, options=options)
    names = [str(f) for f in files] + ([f"camera:{args.camera}"] if args.camera is not None else [])
    writer = None
    sources: list = list(files) + ([args.camera] if args.camera is not None else [])
    try:
        settings = row_settings(options, args.model, det.model_path)
        report = Path(args.report) if args.report else None
        if args.out:
            check_resume_settings(Path(args.out), settings, args.resume)
        writer = RowWriter(args.out, det, resume=args.resume, inputs=names) if args.out else None
        if writer:
            write_settings(Path(args.out), settings)
        job = _input_runner(args, det, writer, files, sources, {**settings, "max_frames": args.max_frames}, report)
        job.failures += [b for b in bad if b[1] != SKIPPED_OUTPUT]  # our own outputs are not failures
        for src in tqdm(sources, desc="rtatl-detect", unit="input", disable=args.quiet or len(sources) < 2):
            _process(job, src)
        if report is not None and job.pages:
            from ..io.report import write_index

            write_index(report, job.pages)
    finally:
        if writer:
            writer.close()
        det.close()
    for name, reason in bad:
        print(f"rtatl-detect: {name}: {reason}", file=sys.stderr)
    return 1 if job.failures else 0


def _input_runner(args, det, writer, files: list[Path], sources: list, settings: dict, report: Path | None) -> InputRunner:
    """The run's ``InputRunner``: every output's names decided once, before the first input."""
    run_options = RunOptions(max_frames=args.max_frames, quiet=args.quiet, camera=args.camera is not None,
                             landmarks=args.landmarks, pose_axes=args.pose_axes)
    openface = (OpenFaceOutput(folder=Path(args.openface), names=openface_names(files),
                               groups=check_groups(args.openface_groups), spaced=args.openface_spaced)
                if args.openface else None)
    if report is not None:
        from ..io.report import plotly

        plotly()  # a missing Plotly is one line now, not after the first video
        report.mkdir(parents=True, exist_ok=True)
    return InputRunner(run_options, det, writer, Path(args.annotate) if args.annotate else None, annotation_names(files),
                       plot_names(sources, Path(args.plot) if args.plot else None, files), report, report_names(files),
                       settings, openface=openface)


def _process(job: InputRunner, src) -> None:
    """One input; its failure is named and recorded, and the run goes on."""
    name = f"camera:{src}" if isinstance(src, int) else str(src)
    try:
        if isinstance(src, int) or src.suffix.lower() in VIDEO_EXTENSIONS:
            job.video(src, name)
        else:
            job.image(src, name)
    except InputError as exc:
        job.failures.append((name, exc.reason))
        print(f"rtatl-detect: {name}: {exc.reason}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rtatl-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="images, videos or folders")
    ap.add_argument("--out", type=Path, help="results file (.csv or .jsonl); without it, results are printed")
    ap.add_argument("--model", help="AU model (.onnx or .engine), or 'v2' for the bundled earlier default (the "
                                    "full-size graph); default: the bundled default model")
    ap.add_argument("--annotate", help="folder (images, videos) or .mp4 file for annotated output")
    ap.add_argument("--no-landmarks", dest="landmarks", action="store_false", help="annotations without the landmarks")
    ap.add_argument("--no-pose-axes", dest="pose_axes", action="store_false",
                    help="annotations without the head's axes and gaze rays")
    ap.add_argument("--plot", help="PNG of AU probabilities over time (videos)")
    ap.add_argument("--report", help="folder for one self-contained HTML page per input and index.html "
                                     "(pip install 'rtatl[report]')")
    ap.add_argument("--openface", metavar="DIR", help="also write OpenFace 2.2's CSV per input into DIR (<stem>.csv: "
                    "FeatureExtraction's layout for videos, FaceLandmarkImg's for images)")
    ap.add_argument("--openface-groups", nargs="+", default=list(OPENFACE_GROUPS), metavar="GROUP",
                    help="OpenFace's column groups, as its flags -gaze -pose -2Dfp -aus choose them (default: all four)")
    ap.add_argument("--openface-spaced", action="store_true",
                    help="', ' between fields, as the OpenFace 2.2.0 Windows binary writes them")
    ap.add_argument("--camera", type=int, help="read this camera index")
    ap.add_argument("--max-frames", type=int, help="stop each video/camera after this many frames")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run writing to --out")
    add_detector_flags(ap)  # --smooth, --calibrate, --threads, --backend, --detect-every, --no-reuse
    ap.add_argument("--cluster", nargs="?", const="local", metavar="ADDRESS", action=_ClusterAction,
                    help="run on a Ray cluster (a local one without ADDRESS; pip install 'rtatl[cluster]'): one "
                         "output per input in --out-dir and manifest.json; run again to redo what failed")
    ap.add_argument("--out-dir", help="with --cluster: the folder for the outputs and the manifest")
    ap.add_argument("--workers", type=int, help="with --cluster: how many AU detectors (default: one per CPU or GPU)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--verbose", action="store_true", help="log details, and MediaPipe/TensorFlow Lite start-up lines")
    return ap


class _ClusterAction(argparse.Action):
    """``--cluster [ADDRESS]``: the value is the address only when it looks like one (``local``,
    ``auto``, ``ray://host:port``, ``host:port``); otherwise it is the first input
    (``rtatl-detect --cluster archive/ --out-dir results/``)."""

    def __call__(self, parser, namespace, value, option_string=None):
        import re

        if value is None or value in ("local", "auto") or "://" in value or re.fullmatch(r"[\w.-]+:\d+", value):
            setattr(namespace, self.dest, value or "local")
        else:
            setattr(namespace, self.dest, "local")
            namespace.cluster_inputs = [*getattr(namespace, "cluster_inputs", []), value]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.inputs = [*getattr(args, "cluster_inputs", []), *args.inputs]
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
