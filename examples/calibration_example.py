"""What ``calibration=True`` does to a person's resting offsets: the README's measured example.

    python examples/calibration_example.py [--model model.onnx] [--video media/single_face.mp4]

``single_face.mp4`` shows one man (never trained on) neutral for its first 18 frames and smiling
from frame 30 on. Prints, without and with per-track calibration: the AUs called present per
neutral frame, the AUs present on more than half of the neutral frames, and the share of smiling
frames on which AU12 and AU06 are present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rtatl_sdk import AUDetector

MEDIA = Path(__file__).resolve().parents[1] / "media"
NEUTRAL_UNTIL, SMILE_FROM = 18, 30  # frames 0-17 neutral, 30 on smiling (the recipe's held-out man)


def measure(det: AUDetector, video: Path) -> dict:
    frames = [f for f in det.detect_video(video) if f.faces]
    present = {f.index: {a for a, r in f.faces[0].aus.items() if r.present} for f in frames}
    neutral = [present[i] for i in present if i < NEUTRAL_UNTIL]
    smiling = [present[i] for i in present if i >= SMILE_FROM]
    counts = {a: sum(a in p for p in neutral) for a in det.aus}
    return {"neutral_frames": len(neutral), "present_per_neutral_frame": float(np.mean([len(p) for p in neutral])),
            "mostly_present_on_neutral": sorted(a for a, c in counts.items() if c > len(neutral) / 2),
            "smiling_frames": len(smiling),
            **{f"{a}_on_smiling": float(np.mean([a in p for p in smiling])) for a in ("AU12", "AU06")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="AU model (default: the installed default model)")
    ap.add_argument("--video", type=Path, default=MEDIA / "single_face.mp4")
    args = ap.parse_args(argv)
    rows = []
    for calibration in (False, True):
        with AUDetector(args.model, calibration=calibration) as det:
            rows.append((calibration, measure(det, args.video), det.model_path.name))
    print(f"model: {rows[0][2]}; {args.video.name}: frames 0-{NEUTRAL_UNTIL - 1} neutral, {SMILE_FROM} on smiling\n")
    print("| calibration | AUs present per neutral frame | present on most neutral frames | AU12 on smiling frames "
          "| AU06 on smiling frames |\n|---|---|---|---|---|")
    for calibration, m, _ in rows:
        print(f"| {'on' if calibration else 'off'} | {m['present_per_neutral_frame']:.2f} ({m['neutral_frames']} frames) | "
              f"{', '.join(m['mostly_present_on_neutral']) or 'none'} | {m['AU12_on_smiling']:.2f} | "
              f"{m['AU06_on_smiling']:.2f} ({m['smiling_frames']} frames) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
