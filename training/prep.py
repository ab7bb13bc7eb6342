"""``rtatl-prep``: one-off preprocessing of a raw dataset into a training cache.

Per frame: face pipeline (largest face) -> 68 landmarks -> aligned 200x200 crop (JPEG) and
aligned landmarks; TV-L1 flow from frame t to frame t+3, the later frame aligned with frame t's
transform (sec. 3.4). One sequence (BP4D task, DISFA video, chunk of a folder) is the unit of
work: its arrays are written to ``parts/<key>.npz`` atomically once all its frames are done, so
an interrupted run resumes at the first unfinished sequence. Frames that fail (undecodable, no
face) are skipped, counted in the part and logged.

The cache's layout, writer and reader: ``training.data.cache``. A sequence whose part exists
is reused only when its inputs (frames, labels, subject, flow setting) are those the part was
made from; a corrected label file redoes the sequences whose labels changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import geometry
from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import CacheError, InputError, RTATLError

from .data import raw
from .data.cache import FLOW_STEP, Part, fingerprint, has_part, write_frame, write_manifest, write_part
from .flow import FlowParams, tvl1_flow

log = logging.getLogger(__name__)


class _FrameReader:
    """Random access to frames of images and videos, caching the open video and decoded frames."""

    def __init__(self):
        self._cap = None
        self._video = None
        self._pos = -1
        self._recent: dict[tuple, np.ndarray | None] = {}

    def read(self, source) -> np.ndarray | None:
        import cv2

        if source in self._recent:
            return self._recent[source]
        from rtatl_sdk.io.images import load_image
        from rtatl_sdk.stream.video import opencv_path

        if source[0] == "image":
            try:
                img = load_image(source[1])  # any file-name bytes; undecodable -> None (counted)
            except InputError:
                img = None
        else:
            _, video, index = source
            if self._video != video:
                if self._cap is not None:
                    self._cap.release()
                with opencv_path(video) as name:  # OpenCV crashes on names that are not UTF-8
                    self._cap = cv2.VideoCapture(name)
                self._video, self._pos = video, -1
            if index != self._pos + 1:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, img = self._cap.read()
            self._pos = index
            img = img if ok else None
        if len(self._recent) > 16:
            self._recent.pop(next(iter(self._recent)))
        self._recent[source] = img
        return img


def _largest_face(pipe, img):
    faces = pipe.process(img)
    from rtatl_sdk.face.pipeline import largest_face

    return largest_face(faces)


def process_sequence(seq: raw.Sequence, cache: Path, pipe, params: FlowParams, with_flow: bool = True) -> dict:
    """Preprocess one sequence into the cache; returns its counts."""
    inputs = sequence_inputs(seq, with_flow)
    if has_part(cache, seq.key, inputs):
        return {"frames": 0, "skipped": 0, "resumed": 1}
    reader = _FrameReader()
    keep, lms, mats, has_flow, noface = [], [], [], [], []
    skipped = dict(seq.skipped)
    for i in range(len(seq.frames)):
        frame = int(seq.frames[i])
        img = reader.read(seq.source(i))
        if img is None:
            skipped["undecodable"] = skipped.get("undecodable", 0) + 1
            continue
        face = _largest_face(pipe, img)
        if face is None:  # its labels are kept: evaluation counts the frame as predicting no AU
            skipped["no face"] = skipped.get("no face", 0) + 1
            noface.append(i)
            continue
        flow = None
        later = seq.later_source(i, FLOW_STEP) if with_flow else None
        nxt = reader.read(later) if later is not None else None
        if nxt is not None:
            nxt_aligned = geometry.warp_to_canvas(nxt, face.aligned.matrix)  # t+3 aligned by frame t's transform
            flow = tvl1_flow(face.aligned.image, nxt_aligned, params)
        write_frame(cache, seq.key, frame, face.aligned.image, flow)
        keep.append(i)
        lms.append(face.aligned.landmarks)
        mats.append(face.aligned.matrix)
        has_flow.append(flow is not None)
    write_part(cache, Part(key=seq.key, subject=seq.subject, sequence=seq.name, frames=seq.frames[keep],
                           labels=seq.labels[keep], landmarks=lms, matrices=mats, has_flow=has_flow, skipped=skipped,
                           inputs=inputs, extra={"noface_frames": seq.frames[noface], "noface_labels": seq.labels[noface],
                                                 **({"intensities": seq.intensities[keep]}
                                                    if seq.intensities is not None else {})}))
    n_skip = sum(skipped.values())
    if n_skip:
        log.warning("%s: %d frames skipped (%s)", seq.key, n_skip, ", ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {"frames": len(keep), "skipped": n_skip, "resumed": 0}


def sequence_inputs(seq: raw.Sequence, with_flow: bool) -> str:
    """The fingerprint of what a sequence's part is made from: its frames, labels, subject, name,
    what it skipped on reading, and whether flow is computed."""
    return fingerprint(np.asarray(seq.frames), np.asarray(seq.labels), seq.subject, seq.name,
                       sorted(dict(seq.skipped).items()), bool(with_flow),
                       np.asarray(seq.intensities) if seq.intensities is not None else None)


_WORKER = {}


def _worker_init(cache, params, with_flow, threads):
    import cv2

    from rtatl_sdk.face import FacePipeline

    cv2.setNumThreads(threads)
    _WORKER.update(pipe=FacePipeline(), cache=cache, params=params, with_flow=with_flow)


def _worker_run(seq):
    try:
        return seq.key, process_sequence(seq, _WORKER["cache"], _WORKER["pipe"], _WORKER["params"], _WORKER["with_flow"]), None
    except Exception as exc:  # reported by the parent with the sequence's name
        return seq.key, None, f"{type(exc).__name__}: {exc}"


def load_sequences(dataset: str, root: Path, images: Path | None = None, aus=None) -> list[raw.Sequence]:
    ds = dataset.upper()
    if ds == "BP4D":
        return raw.read_bp4d(root, images, aus or AU_SETS["BP4D"])
    if ds == "DISFA":
        return raw.read_disfa(root, aus or AU_SETS["DISFA"])
    if ds in ("UNLABELLED", "FOLDER"):
        return raw.read_image_folder(root, len(aus or AU_SETS["BP4D"]))
    raise CacheError(f"dataset: {dataset!r} is not BP4D, DISFA or unlabelled")


def prepare(dataset: str, root: Path, cache: Path, images: Path | None = None, workers: int = 1,
            params: FlowParams = FlowParams(), with_flow: bool = True, aus=None, progress: bool = True) -> dict:
    """Preprocess ``root`` into ``cache`` (resumable). Returns total counts."""
    from tqdm import tqdm

    seqs = load_sequences(dataset, root, images, aus)
    aus = tuple(aus or (AU_SETS["BP4D"] if dataset.upper() not in AU_SETS else AU_SETS[dataset.upper()]))
    cache = Path(cache)
    write_manifest(cache, dataset.upper(), aus, params)
    totals = {"sequences": len(seqs), "frames": 0, "skipped": 0, "resumed": 0, "failed": 0}
    todo = [s for s in seqs if not has_part(cache, s.key, sequence_inputs(s, with_flow))]
    totals["resumed"] = len(seqs) - len(todo)
    bar = tqdm(total=len(todo), desc=f"rtatl-prep {dataset}", unit="seq", disable=not progress)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    if workers <= 1:
        _worker_init(cache, params, with_flow, threads)
        results = map(_worker_run, todo)
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, _worker_init, (cache, params, with_flow, threads))
        results = pool.imap_unordered(_worker_run, todo)
    for key, res, err in results:
        bar.update(1)
        if err:
            totals["failed"] += 1
            log.error("%s: failed: %s", key, err)
            continue
        totals["frames"] += res["frames"]
        totals["skipped"] += res["skipped"]
    bar.close()
    if workers > 1:
        pool.close()
        pool.join()
    return totals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-prep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["BP4D", "DISFA", "unlabelled"], type=lambda s: {"bp4d": "BP4D", "disfa": "DISFA"}.get(s.lower(), s))
    ap.add_argument("root", type=Path, help="the dataset folder as distributed (or a folder of images)")
    ap.add_argument("cache", type=Path, help="output cache folder")
    ap.add_argument("--images", type=Path, default=None, help="BP4D: folder with F001/T1/<frame>.jpg (default ROOT/images)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-flow", action="store_true", help="skip the TV-L1 flow targets")
    ap.add_argument("--flow-scale", type=float, default=1.0, help="compute flow at this fraction of 200 px")
    ap.add_argument("--flow-warps", type=int, default=5)
    ap.add_argument("--flow-scales", type=int, default=5)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        params = FlowParams(scale=args.flow_scale, warps=args.flow_warps, scales=args.flow_scales)
        if args.cache.exists() and not args.cache.is_dir():
            raise InputError(f"cache {args.cache}", "exists and is not a folder")
        totals = prepare(args.dataset, args.root, args.cache, args.images, args.workers, params, not args.no_flow)
    except RTATLError as exc:
        print(f"rtatl-prep: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(totals))
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
