"""Incremental, flushed result writers (CSV with OpenFace-style columns, JSON lines), resumable."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .errors import InputError
from .results import BASE_COLUMNS, ERROR_COLUMN, au_columns


class RowWriter:
    """Writes one frame's rows in a single flushed write. With ``resume``, an existing file is
    kept: a trailing partial line and the rows of the last frame written are dropped (that
    frame is redone), and ``done`` tells which (input, frame) pairs are complete."""

    def __init__(self, path: Path, aus: list[str], resume: bool = False):
        self.path = Path(path)
        self.kind = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(self.path.suffix.lower())
        if self.kind is None:
            raise InputError(str(path), "output must end in .csv or .jsonl")
        self.columns = [*BASE_COLUMNS, *au_columns(aus), ERROR_COLUMN]
        self.last_done: dict[str, int] = {}
        if resume and self.path.is_file():
            self._recover()
            self._fh = open(self.path, "a", newline="")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", newline="")
            if self.kind == "csv":
                self._write(",".join(self.columns) + "\n")

    def _recover(self) -> None:
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        lines = data[:cut].decode("utf-8").splitlines(keepends=True)
        header = 1 if self.kind == "csv" else 0
        if self.kind == "csv" and (not lines or lines[0].strip().split(",") != self.columns):
            raise InputError(str(self.path), "cannot resume: its columns differ from this model's (other model or not our file)")
        rows = [self._parse(x) for x in lines[header:]]
        if rows:  # redo the last frame: its rows may be incomplete
            last = (rows[-1]["input"], int(rows[-1]["frame"]))
            keep = len(rows)
            while keep and (rows[keep - 1]["input"], int(rows[keep - 1]["frame"])) == last:
                keep -= 1
            lines, rows = lines[:header + keep], rows[:keep]
        for r in rows:
            self.last_done[r["input"]] = max(self.last_done.get(r["input"], -1), int(r["frame"]))
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.path)

    def _parse(self, line: str) -> dict:
        if self.kind == "jsonl":
            return json.loads(line)
        return dict(zip(self.columns, next(csv.reader([line]))))

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()

    def write_rows(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.kind == "jsonl":
            self._write("".join(json.dumps(r) + "\n" for r in rows))
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", restval="")
        w.writerows(rows)
        self._write(buf.getvalue())

    def close(self) -> None:
        self._fh.close()
