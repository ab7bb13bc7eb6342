"""Live AUs from a camera in a window; ``--headless`` reads a camera or a video file and prints
(or writes) results without a window.

    python examples/webcam.py                       # camera 0, window (q or Esc quits)
    python examples/webcam.py --headless --source media/single_face.mp4 --out live.csv
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    import cv2

    from rtatl_sdk import AUDetector, RowWriter, RTATLError, annotate, face_row

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="0", help="camera index or video file (default 0)")
    ap.add_argument("--model", default=None, help="AU model (default: the bundled one)")
    ap.add_argument("--headless", action="store_true", help="no window: print or write results")
    ap.add_argument("--out", default=None, help="with --headless: write rows to this .csv/.jsonl")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--smooth", type=float, default=0.6, help="temporal smoothing (0-1]; 1 = off")
    args = ap.parse_args(argv)
    source = int(args.source) if args.source.isdigit() else args.source
    try:
        det = AUDetector(args.model, smoothing=args.smooth)
        writer = RowWriter(args.out, det) if args.out else None
        frames = 0
        for fr in det.detect_video(source, max_frames=args.max_frames, keep_images=not args.headless):
            frames += 1
            if args.headless:
                if writer:
                    writer.write_rows([face_row(str(source), fr.index, fr.timestamp, f) for f in fr.faces])
                else:
                    for f in fr.faces:
                        active = " ".join(n for n, r in f.aus.items() if r.present) or "-"
                        print(f"frame {fr.index} t={fr.timestamp:.2f}s track {f.track_id}: {active}")
                continue
            canvas = annotate(fr.image, fr.faces)
            cv2.imshow("rtatl webcam (q to quit)", canvas)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
        if writer:
            writer.close()
        det.close()
    except RTATLError as exc:
        print(f"webcam: {exc}", file=sys.stderr)
        return 2
    print(f"{frames} frames processed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
