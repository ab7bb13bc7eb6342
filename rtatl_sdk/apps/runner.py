"""Processing of one rtatl-detect input (image, video or camera) into rows, annotations and plots,
shared by the single-process command and the cluster runner (``rtatl_sdk.apps.cluster``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..io.draw import annotate, au_heatmap
from ..io.images import VIDEO_EXTENSIONS


class RunOptions(BaseModel):
    """What one rtatl-detect run does with each input beyond the detector's own options
    (``AUDetector.options``): frame limit, progress bars, and whether a camera runs."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    max_frames: int | None = Field(None, ge=1)  #: stop each video / camera after this many frames
    quiet: bool = True  #: no progress bars
    camera: bool = False  #: the run reads a camera (results are printed live without --out)
    landmarks: bool = True  #: annotations draw the 68 landmarks
    pose_axes: bool = True  #: annotations draw the head's axes and the gaze rays

log = logging.getLogger(__name__)


class OpenFaceOutput(BaseModel):
    """``--openface``: the folder, each input's file name, the column groups, the header spelling."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    folder: Path
    names: dict
    groups: tuple[str, ...]
    spaced: bool = False

    def writer(self, src, still: bool):
        from ..io.openface import OpenFaceWriter

        name = self.names.get(src, f"camera{src}.csv")
        return OpenFaceWriter(self.folder / name, still=still, groups=self.groups, spaced=self.spaced)


class InputRunner:
    """What one rtatl-detect run shares between its inputs."""

    def __init__(self, options: RunOptions, det, writer, ann: Path | None, ann_names: dict, plots: dict | None = None,
                 report: Path | None = None, report_names: dict | None = None, settings: dict | None = None,
                 openface: OpenFaceOutput | None = None):
        self.options, self.det, self.writer, self.ann, self.ann_names = options, det, writer, ann, ann_names
        self.openface = openface
        self.plots = plots or {}  #: input -> its plot file (``plot_names``)
        self.report, self.report_names = report, report_names or {}  #: --report folder, input -> page name
        self.settings = settings or {}
        self.pages: list[tuple[str, str, str]] = []  #: (input, page file name, summary) for the index
        self.failures: list[tuple[str, str]] = []

    def image(self, src: Path, name: str) -> None:
        import cv2

        from ..io.images import load_image
        from ..io.rows import frame_rows

        done = bool(self.writer) and self.writer.last_done.get(name, -1) >= 0
        if done and self.report is None and self.openface is None:
            return  # its rows are in the resumed file; the report and OpenFace files are rewritten whole
        img = load_image(src)
        faces = self.det.detect(img)
        if self.report is not None:
            from ..io.report import still_page

            page = self.report_names.get(src, f"{Path(name).stem}_report.html")
            still_page(self.report / page, name, img, faces, self.det.aus, self.det.published_thresholds, self.det.card,
                       self.settings)
            self.pages.append((name, page, f"image, {len(faces)} face(s)"))
        if self.openface is not None:
            with self.openface.writer(src, still=True) as w:
                w.faces(faces)
        if done:
            return
        if self.writer:
            self.writer.write_rows(frame_rows(name, 0, 0.0, faces))
        elif self.openface is None:
            _print_faces(name, 0, faces)
        if self.ann:
            self.ann.mkdir(parents=True, exist_ok=True)
            target = self.ann / self.ann_names[src]
            try:
                ok = cv2.imwrite(str(target), annotate(img, faces, landmarks=self.options.landmarks, pose=self.options.pose_axes))
            except cv2.error as exc:  # a name OpenCV refuses
                ok = False
                log.debug("imwrite %s: %s", target, exc)
            if not ok:  # a full disk, a name too long for the filesystem, no permission
                raise InputError(str(target), "the annotated image could not be written (disk full, name too long "
                                 "or no permission?); its rows are written")

    def video(self, src, name: str) -> None:
        """A video or camera. On resume, frames already in the file are not written again; when
        smoothing, calibration, an annotated video or a plot depend on earlier frames, the video
        is replayed from its start so that they come out as in an uninterrupted run. The detector's
        options say which of theirs carry such state (``DetectorOptions.carries_state``: smoothing,
        calibration, face tracking, keyframe reuse)."""
        from tqdm import tqdm

        from ..io.rows import error_row, frame_rows

        args, writer = self.options, self.writer
        done = writer.last_done.get(name, -1) if writer else -1
        plot, report = self.plots.get(src), self._video_report(name)
        # an OpenFace file is written whole for each input: it replays the video too
        stateful = self.det.options.carries_state or self.ann is not None or plot is not None or report is not None \
            or self.openface is not None
        start = 0 if (stateful and not isinstance(src, int)) else done + 1
        of, fps = self._openface_video(src)
        series, missing = [], []
        vw = _AnnotatedVideo(self, src, name) if self.ann is not None else None
        bar = tqdm(desc=Path(name).name, unit="frame", disable=args.quiet, leave=False)
        keep = self.ann is not None or report is not None
        for fr in self.det.detect_video(src, max_frames=args.max_frames, start=start, keep_images=keep):
            bar.update(1)
            if report is not None:
                report.add(fr)
            if of is not None:  # a frame without a picture is, to OpenFace, a frame without a face
                of.frame(fr.index, _file_timestamp(fr.index, fps, fr.timestamp), fr.faces)
            new = fr.index > done or isinstance(src, int)
            if fr.error:
                missing.append(fr.index)
                if writer and new:
                    writer.write_rows([error_row(name, fr.index, fr.timestamp, fr.error)])
                continue
            if writer and new:
                writer.write_rows(frame_rows(name, fr.index, fr.timestamp, fr.faces))
            elif not writer and (args.camera or plot is None) and of is None:
                _print_faces(name, fr.index, fr.faces)
            if plot is not None:  # only a plot needs the series (a camera runs without end)
                series.append(_plot_point(fr))
            if vw is not None:
                vw.write(fr)
        bar.close()
        if of is not None:
            of.close()
        if vw is not None:
            vw.release()
        if missing:
            self.failures.append((name, f"{len(missing)} frames without a picture"))
            print(f"rtatl-detect: {name}: frames {_ranges(missing)} could not be decoded or were never "
                  "delivered; each has one row with only the 'error' column set", file=sys.stderr)
        if plot is not None and series:
            au_heatmap(series, self.det.aus, plot, name)
        if report is not None:
            page = self.report_names.get(src, f"{Path(name).stem}_report.html")
            report.write(self.report / page)
            self.pages.append((name, page, f"video, {report.n_frames} frames, {len(report.tracks)} track(s)"))


    def _video_report(self, name: str):
        if self.report is None:
            return None
        from ..io.report import VideoReport

        return VideoReport(name, self.det.aus, self.det.published_thresholds, self.det.card, self.settings)

    def _openface_video(self, src):
        """(the OpenFace writer of a video, its frame rate for OpenFace's timestamps), or (None, None)."""
        if self.openface is None:
            return None, None
        return self.openface.writer(src, still=False), None if isinstance(src, int) else _video_fps(src)


class _AnnotatedVideo:
    """The annotated copy of one video, opened on its first frame; one that cannot be opened is
    named once (a failure of the input) and the rows go on."""

    def __init__(self, job: InputRunner, src, name: str):
        self.job, self.src, self.name = job, src, name
        self.target = job.ann_names.get(src, f"camera{src}_annotated.mp4")
        self.vw = None
        self.failed = False

    def write(self, fr) -> None:
        if self.failed:
            return
        if self.vw is None:
            self.vw = _video_writer(self.job.ann, self.target, self.src)
            if not self.vw.isOpened():  # a name too long, no permission, no codec
                self.vw.release()
                self.failed = True
                reason = f"the annotated video {self.target} could not be opened for writing; its rows are written"
                self.job.failures.append((self.name, reason))
                print(f"rtatl-detect: {self.name}: {reason}", file=sys.stderr)
                return
        o = self.job.options
        self.vw.write(annotate(fr.image, fr.faces, copy=False, landmarks=o.landmarks, pose=o.pose_axes))

    def release(self) -> None:
        if self.vw is not None and not self.failed:
            self.vw.release()


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


def _file_timestamp(index: int, fps: float | None, fallback: float) -> float:
    from ..io.openface import file_timestamp

    return file_timestamp(index, fps, fallback)


def _video_fps(src: Path) -> float | None:
    """A video file's frame rate as its container states it (OpenFace's timestamps), or None."""
    import cv2

    from ..stream.video import opencv_path

    with opencv_path(src) as name:
        cap = cv2.VideoCapture(name)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and fps == fps and 0 < fps < 1000 else None


def _video_writer(ann: Path, file_name: str, src):
    import cv2

    from ..stream.video import opencv_path

    if isinstance(src, int):
        cap = cv2.VideoCapture(src)
    else:
        with opencv_path(src) as name:
            cap = cv2.VideoCapture(name)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    out = ann if ann.suffix.lower() in VIDEO_EXTENSIONS else ann / file_name
    out.parent.mkdir(parents=True, exist_ok=True)
    return cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))


def _print_faces(name: str, frame: int, faces) -> None:
    for f in faces:
        active = " ".join(f"{n}({r.probability:.2f})" for n, r in f.aus.items() if r.present) or "none"
        print(f"{name} frame {frame} face {f.index}: box {f.box.x:.0f},{f.box.y:.0f},{f.box.w:.0f}x{f.box.h:.0f} active: {active}")


def _plot_point(fr) -> tuple:
    """One frame of the --plot series: time, the first face's AU probabilities, pose and gaze angles."""
    if not fr.faces:
        return fr.timestamp, None, None, None
    f = fr.faces[0]
    pose = (f.pose.rx, f.pose.ry, f.pose.rz) if f.pose is not None else None
    gaze = (f.gaze.angle_x, f.gaze.angle_y) if f.gaze is not None else None
    return fr.timestamp, [r.probability for r in f.aus.values()], pose, gaze


