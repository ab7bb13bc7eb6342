"""Processing of one rtatl-detect input (image, video or camera) into rows, annotations and plots,
shared by the single-process command and the cluster runner (``rtatl_sdk.cluster``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .draw import annotate, au_heatmap
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


def output_names(files: list[Path], tail) -> dict[Path, str]:
    """A file name per input: ``<stem><tail(input)>``, with a short hash of the input's full path
    where two inputs would share a name or the name is itself an input's; never an input's name."""
    import hashlib

    taken = {f.name for f in files}
    # names OpenCV can write: bytes that are not UTF-8 become U+FFFD (the path hash keeps them apart)
    stem = {f: os.fsencode(f.stem).decode("utf-8", "replace") for f in files}
    base = {f: f"{stem[f]}{tail(f)}" for f in files}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for f, name in base.items():
        if counts[name] > 1 or name in taken or stem[f] != f.stem:
            h = hashlib.sha1(os.fsencode(str(f.resolve()))).hexdigest()[:8]
            name = f"{stem[f]}_{h}{tail(f)}"
        out[f] = name
    return out


def annotation_names(files: list[Path]) -> dict[Path, str]:
    """File names for annotated outputs: ``<stem>_annotated.<jpg|mp4>`` (``output_names``)."""
    return output_names(files, lambda f: ANNOTATED_SUFFIX + (".jpg" if f.suffix.lower() in IMAGE_EXT else ".mp4"))


class InputRunner:
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
