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

from .draw import annotate, au_heatmap
from .engine import BACKENDS
from .errors import InputError, RTATLError
from .face.tracking import DETECT_EVERY
from .images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

_plot = au_heatmap  # --plot: the AU x time heat map
IMAGE_EXT = IMAGE_EXTENSIONS
VIDEO_EXT = VIDEO_EXTENSIONS


ANNOTATED_SUFFIX = "_annotated"
SKIPPED_OUTPUT = "an annotation in the --annotate folder, not an input; skipped"


def expand_inputs(inputs: list[str], outputs: tuple = (), annotate=None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to process (folders searched recursively) and (input, reason) for unusable ones.
    This run's outputs found in an input folder are not inputs: the ``outputs`` files (result
    file, plot) are left out, and so are annotations (``*_annotated.*``) in the ``annotate``
    folder, each named with the reason."""
    files, bad = [], []
    skip = {Path(o).resolve() for o in outputs if o}
    ann = Path(annotate).resolve() if annotate else None
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                r = f.resolve()
                if r in skip:
                    continue
                if ann is not None and r.parent == ann and f.stem.endswith(ANNOTATED_SUFFIX):
                    bad.append((str(f), SKIPPED_OUTPUT))
                    continue
                if f.suffix.lower() in IMAGE_EXT | VIDEO_EXT:
                    files.append(f)
                else:
                    bad.append((str(f), "not an image or video file (by its extension)"))
        elif p.is_file():
            files.append(p)
        else:
            bad.append((item, "no such file or folder"))
    return files, bad


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


def _check_writable_parent(opt: str, path: Path) -> None:
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{opt} {path}", f"{parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise InputError(f"{opt} {path}", f"{parent} is not writable")
            return


def annotation_names(files: list[Path]) -> dict[Path, str]:
    """File names for annotated outputs: ``<stem>_annotated.<ext>``, with a short hash of the full
    path where two inputs share a stem or the name is itself an input; never an input's name."""
    import hashlib

    taken = {f.name for f in files}
    ext = {f: ".jpg" if f.suffix.lower() in IMAGE_EXT else ".mp4" for f in files}
    # names OpenCV can write: bytes that are not UTF-8 become U+FFFD (the path hash keeps them apart)
    stem = {f: os.fsencode(f.stem).decode("utf-8", "replace") for f in files}
    base = {f: f"{stem[f]}{ANNOTATED_SUFFIX}{ext[f]}" for f in files}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for f, name in base.items():
        if counts[name] > 1 or name in taken or stem[f] != f.stem:
            h = hashlib.sha1(os.fsencode(str(f.resolve()))).hexdigest()[:8]
            name = f"{stem[f]}_{h}{ANNOTATED_SUFFIX}{ext[f]}"
        out[f] = name
    return out


class _Run:
    """What one rtatl-detect run shares between its inputs."""

    def __init__(self, args, det, writer, ann: Path | None, ann_names: dict, n_sources: int):
        self.args, self.det, self.writer, self.ann, self.ann_names = args, det, writer, ann, ann_names
        self.n_sources = n_sources
        self.failures: list[tuple[str, str]] = []

    def image(self, src: Path, name: str) -> None:
        import cv2

        from .images import load_image
        from .results import frame_rows

        if self.writer and self.writer.last_done.get(name, -1) >= 0:
            return
        img = load_image(src)
        faces = self.det.detect(img)
        if self.writer:
            self.writer.write_rows(frame_rows(name, 0, 0.0, faces))
        else:
            _print_faces(name, 0, faces)
        if self.ann:
            self.ann.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(self.ann / self.ann_names[src]), annotate(img, faces))

    def video(self, src, name: str) -> None:
        """A video or camera. On resume, frames already in the file are not written again; when
        smoothing, calibration, an annotated video or a plot depend on earlier frames, the video
        is replayed from its start so that they come out as in an uninterrupted run. Face tracking
        (``--detect-every`` above 1, the default) and keyframe reuse (on unless ``--no-reuse``) are
        such state."""
        from tqdm import tqdm

        from .results import error_row, frame_rows

        args, writer = self.args, self.writer
        done = writer.last_done.get(name, -1) if writer else -1
        # tracking and keyframe reuse carry state from frame to frame too
        stateful = bool(args.smooth or args.calibrate or self.ann is not None or args.plot
                        or args.detect_every > 1 or args.reuse)
        start = 0 if (stateful and not isinstance(src, int)) else done + 1
        vw, series, missing = None, [], []
        bar = tqdm(desc=Path(name).name, unit="frame", disable=args.quiet, leave=False)
        for fr in self.det.detect_video(src, max_frames=args.max_frames, start=start, keep_images=self.ann is not None):
            bar.update(1)
            new = fr.index > done or isinstance(src, int)
            if fr.error:
                missing.append(fr.index)
                if writer and new:
                    writer.write_rows([error_row(name, fr.index, fr.timestamp, fr.error)])
                continue
            if writer and new:
                writer.write_rows(frame_rows(name, fr.index, fr.timestamp, fr.faces))
            elif not writer and (args.camera is not None or not args.plot):
                _print_faces(name, fr.index, fr.faces)
            series.append((fr.timestamp, [r.probability for r in fr.faces[0].aus.values()] if fr.faces else None))
            if self.ann is not None:
                vw = vw or _video_writer(self.ann, self.ann_names.get(src, f"camera{src}_annotated.mp4"), src)
                if vw is not None:
                    vw.write(annotate(fr.image, fr.faces, copy=False))
        bar.close()
        if vw is not None:
            vw.release()
        if missing:
            self.failures.append((name, f"{len(missing)} frames without a picture"))
            print(f"rtatl-detect: {name}: frames {_ranges(missing)} could not be decoded or were never "
                  "delivered; each has one row with only the 'error' column set", file=sys.stderr)
        if args.plot and series:
            plot = Path(args.plot)
            _plot(series, self.det.aus, plot if self.n_sources == 1 else plot.with_name(f"{Path(name).stem}_{plot.name}"), name)


def run(args) -> int:
    from tqdm import tqdm

    from .detector import AUDetector
    from .writers import RowWriter

    files, bad = expand_inputs(args.inputs, (args.out, args.plot), args.annotate)
    check_options(args, files)
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
        job = _Run(args, det, writer, Path(args.annotate) if args.annotate else None, annotation_names(files), len(sources))
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


def _ranges(idx: list[int]) -> str:
    """[1, 2, 3, 7] -> '[1-3, 7]'."""
    parts, start = [], None
    for k, i in enumerate(idx):
        if start is None:
            start = i
        if k + 1 == len(idx) or idx[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return "[" + ", ".join(parts) + "]"


def _video_writer(ann: Path, file_name: str, src):
    import cv2

    from .video import opencv_path

    if isinstance(src, int):
        cap = cv2.VideoCapture(src)
    else:
        with opencv_path(src) as name:
            cap = cv2.VideoCapture(name)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    out = ann if ann.suffix.lower() in VIDEO_EXT else ann / file_name
    out.parent.mkdir(parents=True, exist_ok=True)
    return cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))


def _print_faces(name: str, frame: int, faces) -> None:
    for f in faces:
        active = " ".join(f"{n}({r.probability:.2f})" for n, r in f.aus.items() if r.present) or "none"
        print(f"{name} frame {frame} face {f.index}: box {f.box.x:.0f},{f.box.y:.0f},{f.box.w:.0f}x{f.box.h:.0f} active: {active}")


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
