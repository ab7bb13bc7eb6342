"""Incremental, flushed result writers (CSV with OpenFace-style columns, JSON lines), resumable."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..errors import InputError
from .rows import columns

#: File names may hold any bytes the filesystem allows: undecodable ones round-trip as surrogates.
ENCODING, ERRORS = "utf-8", "surrogateescape"
#: RFC 4180 line ends: the csv module then quotes any field holding a CR or LF (a bare CR is
#: left unquoted with "\n" line ends and would split the row when read back).
CSV_EOL = "\r\n"


class RowWriter:
    """Writes one frame's rows in a single flushed write, holding an exclusive lock on the file
    (a second writer gets an InputError, before anything is truncated).

    With ``resume``, an existing file is kept: a trailing partial row is dropped, and the rows of
    the last frame written are dropped (that frame is redone) only when its input is among
    ``inputs`` (the inputs of the resumed run; ``None``: all); ``last_done`` tells which frames
    of each input are complete."""

    def __init__(self, path: Path, aus, resume: bool = False, inputs=None, intensity: bool = False,
                 emotions: list[str] | None = None):
        """``aus``: the detector whose results are written (its AU list, intensity and expression
        columns are taken from it), or the AU names with ``intensity`` / ``emotions`` given."""
        self.path = Path(path)
        self.kind = {".csv": "csv", ".jsonl": "jsonl"}.get(self.path.suffix.lower())
        if self.kind is None:
            raise InputError(str(path), "output must end in .csv or .jsonl")
        if hasattr(aus, "aus") and hasattr(aus, "has_intensity"):  # an AUDetector
            aus, intensity, emotions = list(aus.aus), aus.has_intensity, aus.emotion_names
        self.columns = columns(list(aus), intensity, emotions)
        self.last_done: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+", newline="", encoding=ENCODING, errors=ERRORS)
        try:
            self._lock()
            if resume and self._fh.tell() > 0:
                self._recover(None if inputs is None else set(inputs))
            else:
                self._fh.truncate(0)
                if self.kind == "csv":
                    self._write(",".join(self.columns) + CSV_EOL)
        except BaseException:
            self._fh.close()
            raise

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; a second writer is not detected
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(str(self.path), "is being written by another process; use another --out file") from None

    def _records(self, fh):
        """(fields, start byte, end byte, complete) of each record of the file after the header, read
        as a stream: memory stays that of one row whatever the file's size. ``complete`` is False
        for a torn last record (no line end, an unterminated quote, a short row)."""
        consumed = [0]
        torn = [False]

        def lines():
            for raw in fh:
                consumed[0] += len(raw)
                torn[0] = not raw.endswith(b"\n")
                yield raw.decode(ENCODING, ERRORS)

        src = lines()
        if self.kind == "jsonl":
            start = 0
            for line in src:
                end = consumed[0]
                try:
                    row = json.loads(line)
                    row = row if isinstance(row, dict) else {}
                except ValueError:
                    row = None
                yield row, start, end, not torn[0] and row is not None
                start = end
            return
        reader = csv.reader(src)
        try:
            header = next(reader, None)
        except csv.Error:
            header = None
        if header != self.columns:
            raise InputError(str(self.path), "cannot resume: its columns differ from this model's (other model or not our file)")
        start = consumed[0]
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error:  # an unterminated quote: the torn last row
                yield None, start, consumed[0], False
                return
            end = consumed[0]
            ok = not torn[0] and len(rec) == len(self.columns)
            yield (dict(zip(self.columns, rec)) if ok else None), start, end, ok
            start = end

    def _recover(self, inputs: set[str] | None) -> None:
        """Continue the file: keep every complete row, cut a torn tail and (when its input is part
        of the resumed run) the last frame's rows, which the run redoes. The file is cut in place at
        a byte offset, never rewritten, so a kill during a resume loses nothing earlier."""
        self._fh.flush()
        cut, group, group_start, torn_at = None, None, None, None
        unit = "line" if self.kind == "jsonl" else "row"
        with open(self.path, "rb") as fh:
            for n, (row, start, end, ok) in enumerate(self._records(fh), 1):
                if torn_at is not None:  # a broken record with more after it: not a torn tail
                    raise InputError(str(self.path), f"cannot resume: {unit} {n - 1} is not a row written by rtatl-detect")
                if not ok:
                    torn_at = start
                    continue
                try:
                    key = (row["input"], int(row["frame"]))
                except (KeyError, TypeError, ValueError):
                    raise InputError(str(self.path), f"cannot resume: {unit} {n} is not a row written by rtatl-detect") from None
                if key != group:
                    if group is not None:
                        self.last_done[group[0]] = max(self.last_done.get(group[0], -1), group[1])
                    group, group_start = key, start
                cut = end
            header_only = cut is None and torn_at is None
        if torn_at is not None:
            cut = torn_at
        if group is not None:
            if inputs is None or group[0] in inputs:  # redo the last frame: it may be incomplete
                cut = group_start
            else:
                self.last_done[group[0]] = max(self.last_done.get(group[0], -1), group[1])
        if header_only and self.kind == "csv":
            cut = None  # the header alone: keep it
        if cut is not None:
            self._fh.truncate(cut)
        self._fh.seek(0, io.SEEK_END)

    def _write(self, text: str) -> None:
        """Append ``text`` straight to the file (no Python buffer: nothing is left to fail at close).
        A write the disk refuses part-way (full, a vanished mount) is cut off again, so the file
        always ends at its last whole row."""
        fd = self._fh.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(text.encode(ENCODING, ERRORS))
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:  # a full disk, a vanished mount
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise InputError(str(self.path), f"cannot be written ({exc.strerror or exc}); the rows before are kept") from None

    def write_rows(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.kind == "jsonl":
            self._write("".join(json.dumps(r) + "\n" for r in rows))
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, lineterminator=CSV_EOL, restval="")
        w.writerows(rows)
        self._write(buf.getvalue())

    def close(self) -> None:
        self._fh.close()
