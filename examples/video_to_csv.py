"""AUs of every face in every frame of a video, written to CSV (OpenFace-style columns).

    python examples/video_to_csv.py media/single_face.mp4 out/single_face.csv
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    from rtatl_sdk import AUDetector, to_dataframe

    det = AUDetector()
    frames = list(det.detect_video(argv[0]))
    df = to_dataframe(frames, input_name=argv[0])
    df.to_csv(argv[1], index=False)
    print(f"{len(frames)} frames, {len(df)} face rows -> {argv[1]}")
    if len(df):
        print(df.filter(like="_p").mean().round(3).to_string())
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
