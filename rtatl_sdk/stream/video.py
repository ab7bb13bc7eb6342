"""Reading frames from video files and cameras."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)
#: A file whose reads fail this many times in a row is taken to have ended.
MAX_CONSECUTIVE_BAD = 50
#: A frame count the container declares is not trusted beyond what the file delivers: frames declared
#: but never delivered get one row each up to this many (or as many as were delivered, if more), then
#: one last row names how many more the header claims (a 10-frame file may declare 2^31 - 1).
MIN_UNDELIVERED_ROWS = 1000


UNDECODABLE = "frame could not be decoded"


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp: float  #: seconds from the start
    image: np.ndarray | None  #: BGR uint8, or None when the frame has no picture (see ``error``)
    error: str | None = None  #: why ``image`` is None: undecodable, or never delivered by a cut file


@contextlib.contextmanager
def opencv_path(path: str | os.PathLike):
    """A name OpenCV can open for ``path``. OpenCV takes UTF-8 text (a file name with other
    bytes crashes it), so such a file is reached through a temporary link with a plain name."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        folder = tempfile.mkdtemp(prefix="rtatl-")
        link = os.path.join(folder, "input" + os.fsencode(Path(path).suffix).decode("ascii", "ignore"))
        os.symlink(os.path.abspath(path), link)
        try:
            yield link
        finally:
            os.unlink(link)
            os.rmdir(folder)
        return
    yield text


def _open(source):
    """(an opened cv2.VideoCapture, a label for messages) of a file path or a camera index."""
    import cv2

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(str(path), "no such video file")
        with opencv_path(path) as name:
            cap = cv2.VideoCapture(name)  # opened: the link may go
        label = str(path)
    elif isinstance(source, int) and not isinstance(source, bool):
        cap = cv2.VideoCapture(source)
        label = f"camera {source}"
    else:
        raise InputError("video", f"expected a path or a camera index, got {type(source).__name__}")
    if not cap.isOpened():
        cap.release()
        raise InputError(label, "cannot be opened as a video")
    return cap, label


class _Clock:
    """Frame times: a decoded frame's own presentation time from the container (variable frame
    rates stay right), else the last decoded frame's time plus the frames since at the average
    rate (frames without a picture, cameras without timestamps)."""

    def __init__(self, cap, fps: float, container: bool):
        import cv2

        self.cap, self.fps, self.container = cap, fps, container
        self.msec = cv2.CAP_PROP_POS_MSEC
        self.last = (-1, 0.0)  # index and time of the last frame decoded

    def stamp(self, i: int) -> float:
        k, t = self.last
        if i == k:
            return t
        if self.fps > 0:
            return t + (i - k) / self.fps if k >= 0 else i / self.fps
        return self.cap.get(self.msec) / 1000.0

    def decoded(self, i: int) -> None:
        msec = self.cap.get(self.msec) if self.container else -1.0
        ok = msec >= 0 and (self.last[0] < 0 or msec / 1000.0 >= self.last[1])  # never backwards
        self.last = (i, msec / 1000.0 if ok else (i / self.fps if self.fps > 0 else 0.0))


def iter_frames(source: str | os.PathLike | int, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames of a video file (path) or camera (int index), in order.

    A frame of a file that cannot be decoded is yielded with ``image=None`` (its index kept);
    a camera that stops delivering frames ends the stream with a logged warning. Raises
    InputError when the source cannot be opened or a camera delivers no frame at all.
    """
    import cv2

    cap, label = _open(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not isinstance(source, int) else 0
    end = total if max_frames is None else min(total, max_frames)

    clock = _Clock(cap, fps, container=not isinstance(source, int))
    stamp, decoded = clock.stamp, clock.decoded

    try:
        index, pending = 0, []  # pending: failed reads not yet known to be corrupt frames or the file's end
        while max_frames is None or index < max_frames:
            ok, img = cap.read()
            if not ok:
                if isinstance(source, int):
                    if index == 0:
                        raise InputError(label, "opened but delivered no frame")
                    log.warning("%s stopped delivering frames after %d frames (disconnected?)", label, index)
                    break
                if index >= total or len(pending) >= MAX_CONSECUTIVE_BAD:
                    break  # the file has ended (or is cut): pending frames are reported below
                pending.append((index, stamp(index)))
                index += 1
                continue
            for i, ts in pending:  # a read failure followed by a good frame: a corrupt frame
                yield Frame(i, float(ts), None, UNDECODABLE)
            pending = []
            decoded(index)
            yield Frame(index, float(stamp(index)), img)
            index += 1
        first = pending[0][0] if pending else index
        if not isinstance(source, int) and clock.last[0] < 0 and not (max_frames is not None and max_frames <= 0):
            raise InputError(label, f"opened but holds no frame that can be decoded (its header declares {total})")
        if not isinstance(source, int) and (pending or index < end):
            # frames the container declares but the file never delivered (a cut or damaged tail)
            reason = f"not delivered: the file ends after frame {first - 1} of the {total} it declares"
            shown = min(end, first + max(MIN_UNDELIVERED_ROWS, first))
            for i in range(first, shown):
                yield Frame(i, float(stamp(i)), None, reason)
            if shown < end:
                log.warning("%s: declares %d frames but delivered %d; rows stop at frame %d", label, total, first, shown)
                yield Frame(shown, float(stamp(shown)), None,
                            f"not delivered: the file ends after frame {first - 1}; its header's {end - shown} further "
                            f"declared frames (to frame {end - 1}) are not believable and get no rows")
    finally:
        cap.release()
