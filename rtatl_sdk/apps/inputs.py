"""rtatl-detect's inputs and output names: which files a run reads (folders searched, links and
loops named, its own outputs left out) and the name of every file it writes for each input
(rows, annotations, report pages, plots, OpenFace files), decided once, before the first input."""

from __future__ import annotations

import os
from pathlib import Path

from ..io.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

ANNOTATED_SUFFIX = "_annotated"


SKIPPED_OUTPUT = "an output of this run (annotation, report page or OpenFace file) in its output folder, not an input; skipped"


REPORT_SUFFIX = "_report.html"


def report_names(files: list[Path]) -> dict[Path, str]:
    """Report page names: ``<stem>_report.html`` (``output_names``), never ``index.html``."""
    return output_names(files, lambda f: REPORT_SUFFIX)


def expand_inputs(inputs: list[str], outputs: tuple = (), annotate=None, out_dir=None, report=None, openface=None
                  ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to process (folders searched recursively, symbolic links followed) and (input, reason)
    for unusable ones. This run's outputs found in an input folder are not inputs: the ``outputs``
    files (result file, plot) and everything in ``out_dir`` (a cluster run's outputs, lock and
    manifest) are left out; annotations (``*_annotated.*``) in the ``annotate`` folder and report
    pages in the ``report`` folder are named with the reason ``SKIPPED_OUTPUT``. A broken link or a
    link loop is named with its reason."""
    files, bad = [], []
    skip = {Path(o).resolve() for o in outputs if o}
    ann = Path(annotate).resolve() if annotate else None
    own = Path(out_dir).resolve() if out_dir else None
    pages = Path(report).resolve() if report else None
    of_dir = Path(openface).resolve() if openface else None
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found, problems = _walk(p, own)
            bad += problems
            for f in found:
                r = f.resolve()
                if r in skip:
                    continue
                if ann is not None and r.parent == ann and f.stem.endswith(ANNOTATED_SUFFIX):
                    bad.append((str(f), SKIPPED_OUTPUT))
                    continue
                if pages is not None and r.parent == pages and (f.name.endswith(REPORT_SUFFIX) or f.name == "index.html"):
                    bad.append((str(f), SKIPPED_OUTPUT))
                    continue
                if of_dir is not None and r.parent == of_dir and f.suffix.lower() == ".csv":
                    bad.append((str(f), SKIPPED_OUTPUT))
                    continue
                if f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                    files.append(f)
                else:
                    bad.append((str(f), "not an image or video file (by its extension)"))
        elif p.is_file():
            files.append(p)
        elif p.is_symlink():
            bad.append((item, f"broken symbolic link (its target {os.readlink(p)} does not exist)"))
        else:
            bad.append((item, "no such file or folder"))
    return files, bad


def _walk(root: Path, skip_dir: Path | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every file under ``root`` in sorted order, through symbolic links to folders (each real
    folder once: a link back up the tree is named, not followed); ``skip_dir`` is left out."""
    files, bad, seen = [], [], set()

    def unreadable(exc: OSError) -> None:  # a folder that cannot be listed is named, the search goes on
        bad.append((exc.filename or str(root), f"cannot be searched ({exc.strerror or exc})"))

    for folder, dirs, names in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(folder)
        if skip_dir is not None and (Path(real) == skip_dir or skip_dir in Path(real).parents):
            dirs[:] = []
            continue
        if real in seen:
            bad.append((folder, "a symbolic link to a folder already searched (a link loop); not followed again"))
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            f = Path(folder) / name
            try:
                if f.is_file():
                    files.append(f)
                elif f.is_symlink():
                    bad.append((str(f), f"broken symbolic link (its target {os.readlink(f)} does not exist)"))
                else:
                    bad.append((str(f), "not a regular file (a pipe, socket or device is not read)"))
            except OSError as exc:
                bad.append((str(f), f"cannot be read ({exc.strerror or exc})"))
    return sorted(files), bad


def path_hash(f: Path) -> str:
    """A short hash of a file's full path: what tells apart outputs of inputs that share a name."""
    import hashlib

    # the path as given (made absolute), not resolved: two links to one file are two inputs with two
    # outputs, each holding its own input's rows
    return hashlib.sha1(os.fsencode(os.path.abspath(f))).hexdigest()[:8]


#: the longest output file name, in bytes: file systems allow 255, and an output's temporary and
#: side files (``.<name>.part-<pid>``, ``.<name>.settings.json``) need room around it
MAX_OUTPUT_NAME = 200


def output_names(files: list[Path], tail, taken: list[Path] | None = None) -> dict[Path, str]:
    """A file name per input: ``<stem><tail(input)>``, with a short hash of the input's full path
    where two inputs would share a name or the name is itself an input's (of ``files``, or of
    ``taken`` when given: every input of the run); never an input's name. A name longer than
    ``MAX_OUTPUT_NAME`` bytes keeps the start of its stem and gets the hash."""
    taken = {f.name for f in (taken if taken is not None else files)}
    # names OpenCV can write: bytes that are not UTF-8 become U+FFFD (the path hash keeps them apart)
    stem = {f: os.fsencode(f.stem).decode("utf-8", "replace") for f in files}
    base = {f: f"{stem[f]}{tail(f)}" for f in files}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for f, name in base.items():
        if counts[name] > 1 or name in taken or stem[f] != f.stem:
            name = f"{stem[f]}_{path_hash(f)}{tail(f)}"
        if len(os.fsencode(name)) > MAX_OUTPUT_NAME:  # cut the stem; the hash keeps such names apart
            room = MAX_OUTPUT_NAME - len(os.fsencode(f"_{path_hash(f)}{tail(f)}"))
            short = os.fsencode(stem[f])[:max(room, 1)].decode("utf-8", "ignore")
            name = f"{short}_{path_hash(f)}{tail(f)}"
        out[f] = name
    return out


def plot_names(sources: list, plot: Path | None, inputs: list[Path] | None = None) -> dict:
    """Where each video's ``--plot`` goes (plots are of videos and cameras): the given file when
    there is one such input; for several, ``<stem>_<plot name>`` beside it (``output_names``: never
    an input's name, photos' included (``inputs``: every input of the run), never shared)."""
    if plot is None:
        return {}
    every = [s for s in (inputs if inputs is not None else sources) if not isinstance(s, int)]
    sources = [s for s in sources if isinstance(s, int) or s.suffix.lower() in VIDEO_EXTENSIONS]
    if len(sources) == 1:
        return {sources[0]: plot}
    files = [s for s in sources if not isinstance(s, int)]
    names = output_names(files, lambda f: f"_{plot.name}", taken=every)
    out: dict = {f: plot.with_name(n) for f, n in names.items()}
    out.update({s: plot.with_name(f"camera{s}_{plot.name}") for s in sources if isinstance(s, int)})
    return out


def openface_names(files: list[Path]) -> dict[Path, str]:
    """OpenFace CSV names: ``<stem>.csv``, as OpenFace names them (``output_names``)."""
    return output_names(files, lambda f: ".csv")


def annotation_names(files: list[Path]) -> dict[Path, str]:
    """File names for annotated outputs: ``<stem>_annotated.<jpg|mp4>`` (``output_names``)."""
    return output_names(files, lambda f: ANNOTATED_SUFFIX + (".jpg" if f.suffix.lower() in IMAGE_EXTENSIONS else ".mp4"))
