"""One self-contained HTML page per input (``rtatl-detect --report DIR``) and an index page.

A page holds everything inline: Plotly's JavaScript bundle (offline; ``pip install
'rtatl[report]'``), the styles, and the thumbnails as JPEG data URLs, so it opens without a
network and can be mailed. A video's page: per track, the AU heat map over time, per-AU
probability curves, head-pose and gaze curves, a thumbnail of the face at each AU's strongest
moment, and a summary table (share of frames each AU is present, mean probability, longest
run); frames without a face are marked; hovering shows the frame and the time. A still's page:
the annotated image and an AU bar chart per face with its thresholds. Both carry the model
card (what it was trained on, its terms, its limits) and the run's settings.

Memory stays small for long videos: ``VideoReport`` keeps a few numbers per face per frame and
at most one small thumbnail per AU per track; curves of more than ``MAX_POINTS`` frames are
drawn binned (the largest probability of each bin, so short events stay visible).
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract.au import AU_NAMES, au_number
from ..errors import InputError

#: curves longer than this are binned to this many points
MAX_POINTS = 1500
#: thumbnails are drawn for at most this many tracks (the longest)
MAX_THUMB_TRACKS = 6
THUMB_SIZE = 96


def plotly():
    try:
        import plotly.graph_objects as go
        import plotly.offline
    except ImportError:
        raise InputError("--report", "needs Plotly: pip install 'rtatl[report]'") from None
    return go, plotly.offline


def _jpeg(bgr: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else b""


def _data_url(jpg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpg).decode() if jpg else ""


def _face_thumb(image: np.ndarray, box) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    cx, cy, side = box.x + box.w / 2, box.y + box.h / 2, max(box.w, box.h) * 1.2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    crop = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    return cv2.resize(crop, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


@dataclass
class _Track:
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    pose: list[tuple] = field(default_factory=list)  #: (pitch, yaw, roll) degrees or NaNs
    gaze: list[tuple] = field(default_factory=list)  #: (x, y) degrees or NaNs
    emotions: list[np.ndarray] = field(default_factory=list)  #: expression probabilities (model with the head)
    emotion_names: list[str] = field(default_factory=list)
    best: dict[int, tuple[float, int, float, bytes]] = field(default_factory=dict)  #: AU -> (p, frame, t, jpeg)


class VideoReport:
    """Collects a video's results frame by frame (``add``), writes its page at the end (``write``)."""

    def __init__(self, name: str, aus: list[str], thresholds, card, settings: dict):
        self.name, self.aus, self.thresholds = name, list(aus), np.asarray(thresholds, np.float64)
        self.card, self.settings = card, settings
        self.tracks: dict[int, _Track] = {}
        self.no_face: list[tuple[int, float]] = []
        self.missing: list[tuple[int, float]] = []  #: frames without a picture
        self.n_frames = 0

    def add(self, frame) -> None:
        """One ``FrameResult`` (with its ``image`` when thumbnails are wanted)."""
        self.n_frames += 1
        if frame.error:
            self.missing.append((frame.index, frame.timestamp))
            return
        if not frame.faces:
            self.no_face.append((frame.index, frame.timestamp))
        for k, face in enumerate(frame.faces):
            tid = face.track_id if face.track_id is not None else k
            tr = self.tracks.setdefault(tid, _Track())
            p = np.array([r.probability for r in face.aus.values()], np.float32)
            tr.frames.append(frame.index)
            tr.times.append(frame.timestamp)
            tr.probs.append(p)
            tr.pose.append(tuple(np.degrees([face.pose.rx, face.pose.ry, face.pose.rz])) if face.pose else (np.nan,) * 3)
            tr.gaze.append(tuple(np.degrees([face.gaze.angle_x, face.gaze.angle_y])) if face.gaze else (np.nan,) * 2)
            if face.emotions:
                tr.emotion_names = list(face.emotions)
                tr.emotions.append(np.array(list(face.emotions.values()), np.float32))
            better = [j for j, prob in enumerate(p) if prob > tr.best.get(j, (-1.0,))[0]]
            if frame.image is not None and better:  # one thumbnail for every AU this frame beats
                jpg = _jpeg(_face_thumb(frame.image, face.box))
                for j in better:
                    tr.best[j] = (float(p[j]), frame.index, frame.timestamp, jpg)

    def write(self, path: Path) -> Path:
        go, offline = plotly()
        parts = [f"<p>{self.n_frames} frames; {len(self.tracks)} track(s); {len(self.no_face)} frames without a face"
                 f"{'; ' + str(len(self.missing)) + ' frames without a picture' if self.missing else ''}.</p>"]
        order = sorted(self.tracks, key=lambda t: -len(self.tracks[t].frames))
        for n, tid in enumerate(order):
            parts.append(self._track_section(go, tid, self.tracks[tid], thumbs=n < MAX_THUMB_TRACKS))
        if not self.tracks:
            parts.append("<p class='note'>No face was found in this video.</p>")
        return _write_page(path, self.name, "video", parts, self.card, self.settings, offline)

    def _track_section(self, go, tid: int, tr: _Track, thumbs: bool) -> str:
        probs = np.stack(tr.probs)
        t = np.asarray(tr.times)
        frames = np.asarray(tr.frames)
        tb, fb, pb = _binned(t, frames, probs, np.max)
        _, _, pose = _binned(t, frames, np.asarray(tr.pose, np.float64), np.nanmean)
        _, _, gaze = _binned(t, frames, np.asarray(tr.gaze, np.float64), np.nanmean)
        heat = go.Figure(go.Heatmap(z=pb.T, x=tb, y=self.aus, customdata=np.tile(fb, (len(self.aus), 1)),
                                    zmin=0, zmax=1, colorscale="Magma", colorbar={"title": "p"},
                                    hovertemplate="%{y}<br>frame %{customdata}, %{x:.2f} s<br>p = %{z:.2f}<extra></extra>"))
        heat.update_layout(title=f"Track {tid}: AU probability over time", height=120 + 22 * len(self.aus),
                           margin={"l": 60, "r": 20, "t": 40, "b": 40}, xaxis_title="time (s)",
                           yaxis={"autorange": "reversed"})
        curves = go.Figure()
        for j, au in enumerate(self.aus):
            curves.add_trace(go.Scatter(x=tb, y=pb[:, j], name=au, mode="lines", customdata=fb,
                                        visible=True if j < 4 else "legendonly",
                                        hovertemplate=f"{au}: %{{y:.2f}}<br>frame %{{customdata}}, %{{x:.2f}} s<extra></extra>"))
        if self.no_face:
            nf = np.asarray(self.no_face, np.float64)
            curves.add_trace(go.Scatter(x=nf[:, 1], y=np.full(len(nf), -0.04), mode="markers", name="no face",
                                        marker={"symbol": "line-ns-open", "color": "grey", "size": 8},
                                        customdata=nf[:, 0].astype(int),
                                        hovertemplate="no face<br>frame %{customdata}, %{x:.2f} s<extra></extra>"))
        curves.update_layout(title="Probabilities (click the legend to show more AUs)", height=320, yaxis_range=[-0.08, 1.02],
                             margin={"l": 60, "r": 20, "t": 40, "b": 40}, xaxis_title="time (s)", yaxis_title="probability")
        figs = [heat, curves]
        if np.isfinite(pose).any() or np.isfinite(gaze).any():
            geo = go.Figure()
            for k, label in enumerate(("pitch", "yaw", "roll")):
                geo.add_trace(go.Scatter(x=tb, y=pose[:, k], name=label, mode="lines", customdata=fb,
                                         hovertemplate=f"{label} %{{y:.1f}} deg<br>frame %{{customdata}}<extra></extra>"))
            for k, label in enumerate(("gaze x", "gaze y")):
                geo.add_trace(go.Scatter(x=tb, y=gaze[:, k], name=label, mode="lines", line={"dash": "dot"}, customdata=fb,
                                         hovertemplate=f"{label} %{{y:.1f}} deg<br>frame %{{customdata}}<extra></extra>"))
            geo.update_layout(title="Head pose and gaze (degrees)", height=280, margin={"l": 60, "r": 20, "t": 40, "b": 40},
                              xaxis_title="time (s)")
            figs.append(geo)
        if tr.emotions and len(tr.emotions) == len(tr.frames):
            _, _, eb = _binned(t, frames, np.stack(tr.emotions), np.mean)
            emo = go.Figure()
            for k, label in enumerate(tr.emotion_names):
                emo.add_trace(go.Scatter(x=tb, y=eb[:, k], name=label, mode="lines", stackgroup="e", customdata=fb,
                                         hovertemplate=f"{label} %{{y:.2f}}<br>frame %{{customdata}}<extra></extra>"))
            emo.update_layout(title="Expressions over time (probabilities, stacked to 1)", height=300, yaxis_range=[0, 1],
                              margin={"l": 60, "r": 20, "t": 40, "b": 40}, xaxis_title="time (s)")
            figs.append(emo)
        html_figs = "".join(f.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}) for f in figs)
        return (f"<section><h2>Track {tid}</h2>{self._summary(probs, t)}{html_figs}"
                f"{self._thumbs(tr) if thumbs else ''}</section>")

    def _summary(self, probs: np.ndarray, t: np.ndarray) -> str:
        present = probs >= self.thresholds
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        rows = []
        for j, au in enumerate(self.aus):
            run = _longest_run(present[:, j])
            rows.append(f"<tr><td>{au}</td><td>{html.escape(AU_NAMES.get(au_number(au), ''))}</td>"
                        f"<td>{present[:, j].mean():.0%}</td><td>{probs[:, j].mean():.2f}</td>"
                        f"<td>{run} frames ({run * dt:.1f} s)</td><td>{self.thresholds[j]:.2f}</td></tr>")
        return ("<table class='summary'><tr><th>AU</th><th>name</th><th>frames present</th><th>mean probability</th>"
                "<th>longest run</th><th>threshold</th></tr>" + "".join(rows) + "</table>")

    def _thumbs(self, tr: _Track) -> str:
        cells = []
        for j, au in enumerate(self.aus):
            if j in tr.best and tr.best[j][3]:
                p, frame, t, jpg = tr.best[j]
                src = _data_url(jpg)
                cells.append(f"<figure><img src='{src}' alt='{au} at frame {frame}' width='{THUMB_SIZE}' "
                             f"height='{THUMB_SIZE}'><figcaption>{au} {p:.2f}<br>frame {frame}, {t:.2f} s</figcaption></figure>")
        return "<h3>Strongest moment of each AU</h3><div class='thumbs'>" + "".join(cells) + "</div>" if cells else ""


def _longest_run(mask: np.ndarray) -> int:
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def _binned(t: np.ndarray, frames: np.ndarray, values: np.ndarray, reduce):
    """(times, frames, values) with at most ``MAX_POINTS`` rows: each bin's first time and frame
    and ``reduce`` of its values (``np.max`` for probabilities, ``np.nanmean`` for angles)."""
    if len(t) <= MAX_POINTS:
        return t, frames, values
    edges = np.linspace(0, len(t), MAX_POINTS + 1).astype(int)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin of NaN angles (no pose there)
        vals = np.stack([reduce(values[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return t[edges[:-1]], frames[edges[:-1]], vals


def still_page(path: Path, name: str, image: np.ndarray, faces, aus: list[str], thresholds, card, settings: dict) -> Path:
    """The page of one image: the annotated image and an AU bar chart per face with thresholds."""
    import cv2

    from .draw import annotate

    go, offline = plotly()
    shown = annotate(image, faces)
    scale = min(1.0, 960 / max(shown.shape[1], 1))
    if scale < 1:
        shown = cv2.resize(shown, (int(shown.shape[1] * scale), int(shown.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    parts = [f"<img class='still' src='{_data_url(_jpeg(shown, 85))}' alt='annotated {html.escape(name)}'>",
             f"<p>{len(faces)} face(s).</p>"]
    for f in faces:
        th = np.array([r.threshold for r in f.aus.values()], np.float64)  # the published probability's threshold
        p = [r.probability for r in f.aus.values()]
        colours = ["#d9480f" if r.present else ("#adb5bd" if r.present is None else "#4c6ef5") for r in f.aus.values()]
        fig = go.Figure(go.Bar(x=list(f.aus), y=p, marker_color=colours, name="probability",
                               hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=list(f.aus), y=th, mode="markers", name="threshold",
                                 marker={"symbol": "line-ew-open", "size": 18, "color": "black"},
                                 hovertemplate="threshold %{y:.2f}<extra></extra>"))
        fig.update_layout(title=f"Face {f.index}: AU probabilities (orange: present)", height=320, yaxis_range=[0, 1],
                          margin={"l": 50, "r": 20, "t": 40, "b": 40})
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
        if f.emotions:
            emo = go.Figure(go.Bar(x=list(f.emotions), y=list(f.emotions.values()), marker_color="#2b8a3e",
                                   hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
            emo.update_layout(title=f"Face {f.index}: expressions (top: {f.emotion})", height=260, yaxis_range=[0, 1],
                              margin={"l": 50, "r": 20, "t": 40, "b": 40})
            parts.append(emo.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    return _write_page(path, name, "image", parts, card, settings, offline)


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#212529;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;border-bottom:1px solid #dee2e6;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #dee2e6;padding:.25em .6em;text-align:left}
th{background:#f1f3f5}.thumbs{display:flex;flex-wrap:wrap;gap:.5em}figure{margin:0;text-align:center;font-size:.8em}
img.still{max-width:100%;border:1px solid #dee2e6}.note{color:#868e96}details{margin:1em 0}code{font-size:.9em}
"""


def _card_html(card, settings: dict) -> str:
    prov = card.provenance
    metrics = ", ".join(f"{k}: {v:.3f}" for k, v in card.metrics.items() if isinstance(v, (int, float)))
    rows = [("model", f"{card.name} {card.version}"), ("AUs", ", ".join(card.aus)), ("trained on", prov.training_data),
            ("terms", prov.licence), ("notes and limits", prov.notes), ("metrics", metrics or "none recorded")]
    card_rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    run_rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
                       for k, v in settings.items())
    return (f"<details open><summary>Model card</summary><table>{card_rows}</table></details>"
            f"<details><summary>Settings of this run</summary><table>{run_rows}</table></details>")


def _write_page(path: Path, name: str, kind: str, parts: list[str], card, settings: dict, offline) -> Path:
    from .files import atomic_write_bytes

    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(name)} - rtatl</title>"
            f"<style>{STYLE}</style><script>{offline.get_plotlyjs()}</script></head><body>"
            f"<p><a href='index.html'>all inputs</a></p><h1>{html.escape(name)}</h1><p class='note'>{kind}; AU "
            f"probabilities from the model below (not FACS coding by a person)</p>"
            + "".join(parts) + _card_html(card, settings) + "</body></html>")
    path = Path(path)
    try:
        atomic_write_bytes(path, page.encode("utf-8", "replace"))  # a page declared UTF-8 holds UTF-8 only
    except OSError as exc:
        raise InputError(str(path), f"the report page cannot be written ({exc.strerror or exc})") from None
    return path


def write_index(folder: Path, pages: list[tuple[str, str, str]]) -> Path:
    """``index.html``: one line per input (name, its page, a summary)."""
    from .files import atomic_write_bytes

    rows = "".join(f"<tr><td><a href='{page_href(page)}'>{html.escape(name)}</a></td><td>{html.escape(summary)}</td></tr>"
                   for name, page, summary in pages)
    text = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>rtatl report</title><style>{STYLE}</style>"
            f"</head><body><h1>AU report: {len(pages)} input(s)</h1><table><tr><th>input</th><th>summary</th></tr>{rows}"
            "</table></body></html>")
    path = Path(folder) / "index.html"
    atomic_write_bytes(path, text.encode("utf-8", "replace"))
    return path


def page_href(name: str) -> str:
    """A file name beside the page as a link: every character outside the unreserved set percent-
    encoded (so ``javascript:x.html`` is a relative path, not a scheme, and ``#``, ``?``, ``%``
    reach the file), then HTML-escaped for the attribute. The one place names become links."""
    from urllib.parse import quote

    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    return html.escape("./" + quote(raw, safe=""), quote=True)
