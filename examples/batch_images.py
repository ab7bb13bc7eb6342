"""AUs of all faces in a folder of images, batched through the AU model; prints a table.

    python examples/batch_images.py media
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from rtatl_sdk import AUDetector, InputError

    folder = Path(argv[0])
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    det = AUDetector()
    good = []
    for p in paths:  # check each file first so one bad file does not stop the batch
        try:
            from rtatl_sdk import load_image

            load_image(p)
            good.append(p)
        except InputError as exc:
            print(f"skipped {exc}", file=sys.stderr)
    for p, faces in zip(good, det.detect_batch(good)):
        for f in faces:
            top = sorted(f.aus.items(), key=lambda kv: -kv[1].probability)[:3]
            print(f"{p.name} face {f.index}: " + ", ".join(f"{k} {v.probability:.2f}" for k, v in top))
        if not faces:
            print(f"{p.name}: no face")
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
