"""Head pose and gaze: what they cost per face, and how equivariant they are on real faces.

    python -m bench.bench_pose

Cost: the pose fit and gaze of one face (``AUDetector._geometry``: solvePnP on 33 stable mesh
points, two eyeball-ray intersections) beside the Landmarker's own time for that face, on the
faces of ``multi_face.jpg``. Equivariance: a mirrored frame should negate yaw, roll and
gaze_angle_x and keep pitch; an image turned by 15 degrees should move roll by 15 degrees;
measured on every 15th frame of ``WolfgangLanger_Pexels.mp4`` and on ``single_face.jpg``.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.common import MEDIA, header, table, timeit


def main() -> int:
    import cv2

    from rtatl_sdk import AUDetector
    from rtatl_sdk.stream.video import iter_frames

    print(header())
    with AUDetector(threads=1) as det:
        img = cv2.imread(str(MEDIA / "multi_face.jpg"))
        faces = det.pipeline.process(img)
        geo = timeit(lambda: [det._geometry(f, img.shape) for f in faces], repeats=30)
        box = faces[0].box
        lmk = timeit(lambda: det.pipeline.face_in_box(img, box), repeats=30)
        print(table([{"stage": "pose + gaze, per face", "median ms": geo["median_ms"] / len(faces),
                      "p90 ms": geo["p90_ms"] / len(faces)},
                     {"stage": "Landmarker, per face (for scale)", "median ms": lmk["median_ms"], "p90 ms": lmk["p90_ms"]}],
                    ["stage", "median ms", "p90 ms"]))

        def one(image):
            found = det.detect(image)
            return found[0] if len(found) == 1 else None

        mirror, turn = [], []
        frames = [fr.image for fr in iter_frames(MEDIA / "WolfgangLanger_Pexels.mp4") if fr.index % 15 == 0]
        frames.append(cv2.imread(str(MEDIA / "single_face.jpg")))
        for image in frames:
            a, b = one(image), one(np.ascontiguousarray(image[:, ::-1]))
            h, w = image.shape[:2]
            t = one(cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), -15, 1.0), (w, h),
                                   borderMode=cv2.BORDER_REPLICATE))
            if a is None or b is None or a.pose is None or b.pose is None:
                continue
            g = abs(a.gaze.angle_x + b.gaze.angle_x) if a.gaze and b.gaze else np.nan
            mirror.append((abs(a.pose.ry + b.pose.ry), abs(a.pose.rz + b.pose.rz), g, abs(a.pose.rx - b.pose.rx)))
            if t is not None and t.pose is not None:
                turn.append(abs((t.pose.rz - a.pose.rz) - np.radians(15)))
    e = np.degrees(np.array(mirror))
    rows = []
    for k, name in enumerate(("mirror: yaw + yaw'", "mirror: roll + roll'", "mirror: gaze_x + gaze_x'", "mirror: pitch - pitch'")):
        v = e[:, k][~np.isnan(e[:, k])]
        rows.append({"error (degrees)": name, "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
                     "max": float(v.max()), "frames": len(v)})
    v = np.degrees(np.array(turn))
    rows.append({"error (degrees)": "turned 15 deg: roll moved - 15", "median": float(np.median(v)),
                 "p90": float(np.percentile(v, 90)), "max": float(v.max()), "frames": len(v)})
    print(table(rows, ["error (degrees)", "median", "p90", "max", "frames"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
