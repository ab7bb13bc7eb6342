"""Incremental, flushed result writers (CSV with OpenFace-style columns, JSON lines), resumable."""

from __future__ import annotations

import csv
import io
import json
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

    def __init__(self, path: Path, aus: list[str], resume: bool = False, inputs=None, intensity: bool = False):
        self.path = Path(path)
        self.kind = {".csv": "csv", ".jsonl": "jsonl"}.get(self.path.suffix.lower())
        if self.kind is None:
            raise InputError(str(path), "output must end in .csv or .jsonl")
        self.columns = columns(aus, intensity)
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

    def _rows(self, text: str) -> list[dict]:
        """The complete rows of the file's text (a torn last row is left out)."""
        if self.kind == "jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(keepends=True), 1):
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    row = json.loads(line)
                    int(row["frame"]), row["input"]  # noqa: B018 - a row of ours has both
                except (ValueError, KeyError, TypeError):
                    raise InputError(str(self.path), f"cannot resume: line {n} is not a row written by rtatl-detect") from None
                rows.append(row)
            return rows
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header != self.columns:
                raise InputError(str(self.path), "cannot resume: its columns differ from this model's (other model or not our file)")
            records = list(reader)
        except csv.Error:  # an unterminated quote: the torn last row
            records = list(csv.reader(io.StringIO(text[: text.rfind("\n", 0, len(text) - 1) + 1], newline="")))[1:]
        if records and not text.endswith("\n"):
            records = records[:-1]
        rows = [dict(zip(self.columns, r)) for r in records if len(r) == len(self.columns)]
        for r in rows:
            try:
                int(r["frame"])
            except ValueError:
                raise InputError(str(self.path), "cannot resume: a row's frame is not a number (not our file)") from None
        return rows

    def _recover(self, inputs: set[str] | None) -> None:
        self._fh.seek(0)
        rows = self._rows(self._fh.read())
        if rows and (inputs is None or rows[-1]["input"] in inputs):  # redo the last frame: it may be incomplete
            last = (rows[-1]["input"], int(rows[-1]["frame"]))
            while rows and (rows[-1]["input"], int(rows[-1]["frame"])) == last:
                rows.pop()
        for r in rows:
            self.last_done[r["input"]] = max(self.last_done.get(r["input"], -1), int(r["frame"]))
        self._fh.seek(0)
        self._fh.truncate(0)
        if self.kind == "csv":
            self._write(",".join(self.columns) + CSV_EOL)
        self.write_rows(rows)

    def _write(self, text: str) -> None:
        try:
            self._fh.write(text)
            self._fh.flush()
        except OSError as exc:  # a full disk, a vanished mount
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
