"""Start-up: what a process imports before its first face (run in fresh interpreters)."""

import subprocess
import sys

from tests.helpers import REPO


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_mediapipe_comes_without_its_drawing_audio_and_text_modules_until_they_are_used():
    lines = _run("""
import sys
from rtatl_sdk.face.mp_import import vision
v = vision()
print(v.FaceLandmarker.__name__, 'matplotlib' in sys.modules, 'mediapipe.tasks.python.audio.audio_classifier' in sys.modules)
from mediapipe.tasks.python.vision import drawing_utils
print(callable(drawing_utils.draw_landmarks), 'matplotlib.pyplot' in sys.modules)
from mediapipe.tasks.python import audio
import mediapipe as mp
print(audio.AudioClassifier.__name__, mp.tasks.vision.drawing_styles.get_default_face_mesh_contours_style.__name__)
try:
    drawing_utils.no_such_name
except AttributeError:
    print('AttributeError')
""")
    assert lines == ["FaceLandmarker", "False", "False", "True", "True", "AudioClassifier",
                     "get_default_face_mesh_contours_style", "AttributeError"]


def test_a_detector_finds_faces_without_importing_matplotlib_or_torch():
    lines = _run("""
import sys
from rtatl_sdk import AUDetector
with AUDetector() as det:
    faces = det.detect('media/single_face.jpg')
print(len(faces), 'matplotlib' in sys.modules, 'torch' in sys.modules)
""")
    assert lines == ["1", "False", "False"]


def test_a_caller_who_imported_mediapipe_first_keeps_it_whole():
    lines = _run("""
import sys
import mediapipe
from rtatl_sdk.face.mp_import import Deferred, vision
vision()
print(any(isinstance(m, Deferred) for m in list(sys.modules.values())))
""")
    assert lines == ["False"]
