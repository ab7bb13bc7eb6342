"""AU detection with the default model on a real face image; writes an annotated copy.

    python examples/demo.py [IMAGE] [--out DIR]

Without IMAGE it uses scikit-image's public-domain ``astronaut`` photo (no download). Prints
each face's AU probabilities (present ones marked) and writes DIR/annotated.jpg and
DIR/aligned.jpg (the 192x192 crops the model sees, with each AU's two RoI centres).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    import cv2

    from rtatl_sdk import AUDetector, RTATLError, annotate, au_number, draw_au_centres, load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", help="image path (default: scikit-image astronaut)")
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--model", default=None, help="AU model (default: the bundled one)")
    args = ap.parse_args(argv)
    try:
        if args.image:
            img = load_image(args.image)
        else:
            from skimage import data

            img = load_image(data.astronaut(), colour="rgb", name="astronaut")
        det = AUDetector(args.model, keep_crops=True)
        faces = det.detect(img)
    except RTATLError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    print(f"model: {det.model_path.name} ({det.card.provenance.training_data[:100]}...)")
    print(f"{len(faces)} face(s)")
    for f in faces:
        line = "  ".join(f"{a}{'?' if r.present is None else '*' if r.present else ' '}{r.probability:.2f}"
                         + ("" if r.intensity is None else f" ({r.intensity:.1f})") for a, r in f.aus.items())
        print(f"face {f.index} at x={f.box.x:.0f} y={f.box.y:.0f} w={f.box.w:.0f}: {line}")
        if f.emotions:
            top = sorted(f.emotions.items(), key=lambda kv: -kv[1])[:3]
            print("    expression: " + ", ".join(f"{e} {p:.2f}" for e, p in top))
        if f.pose is not None:
            deg = 180 / 3.141592653589793
            gaze = (f"; gaze x {f.gaze.angle_x * deg:+.0f}, y {f.gaze.angle_y * deg:+.0f} deg" if f.gaze is not None
                    else "; gaze: none (eyes closed or not visible)")
            print(f"    head: pitch {f.pose.rx * deg:+.0f}, yaw {f.pose.ry * deg:+.0f}, roll {f.pose.rz * deg:+.0f} deg, "
                  f"{f.pose.tz / 10:.0f} cm from the camera{gaze}")
    print("(* = present at the card's threshold; ? = the AU's region is outside the image"
          + ("; (x) = intensity 0-5: " + det.card.intensity_scale if det.card.intensity_scale else "") + ")")
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "annotated.jpg"), annotate(img, faces))
    aus = [au_number(a) for a in det.aus]
    crops = [draw_au_centres(f.crop.copy(), f.crop_centres, aus) for f in faces]  # what the model saw
    if crops:
        cv2.imwrite(str(args.out / "aligned.jpg"), np.hstack(crops))
    print(f"wrote {args.out / 'annotated.jpg'}" + (f" and {args.out / 'aligned.jpg'}" if crops else ""))
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
