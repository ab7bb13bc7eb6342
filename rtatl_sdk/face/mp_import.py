"""Import MediaPipe's Face Landmarker without paying for the parts of MediaPipe the SDK never uses.

``import mediapipe`` (any of its modules) runs ``mediapipe/tasks/python/__init__.py``, which
imports every task: audio, text and vision, and vision's drawing helpers import
``matplotlib.pyplot``. On a 2-core machine that is about 1.1 s of a process's start, of which
the drawing helpers (matplotlib) are about 0.8 s and the audio and text tasks most of the rest
(``python -X importtime -c "import mediapipe"``).

``vision()`` imports MediaPipe with those modules *deferred*: each is a placeholder module in
``sys.modules`` that imports the real one the first time any of its attributes is used (so
``mediapipe.tasks.python.vision.drawing_utils.draw_landmarks``, or ``from
mediapipe.tasks.python import audio``, still work in the same process, only later). Nothing is
deferred when MediaPipe is already imported (the caller's own ``import mediapipe`` wins).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

#: the modules deferred, and the package whose namespace names them
VISION = "mediapipe.tasks.python.vision"
DEFERRED = {"mediapipe.tasks.python.audio": "mediapipe.tasks.python",
            "mediapipe.tasks.python.text": "mediapipe.tasks.python",
            f"{VISION}.drawing_utils": VISION,
            f"{VISION}.drawing_styles": VISION}
_lock = threading.RLock()


class Deferred(types.ModuleType):
    """A stand-in for a module: the real one is imported when an attribute is first asked for."""

    def __getattr__(self, attr: str):
        name = self.__name__
        with _lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
        self.__dict__.update({k: v for k, v in real.__dict__.items() if k not in ("__name__", "__spec__")})
        return getattr(real, attr)

    def __repr__(self) -> str:
        return f"<deferred module {self.__name__!r}>"


def _stand_in(name: str) -> Deferred:
    mod = Deferred(name)
    mod.__spec__ = None  # read by the import system; None means "already imported", so nothing is loaded
    return mod


class _NamesDeferred(importlib.abc.MetaPathFinder):
    """Finds the vision package as usual and gives its namespace the stand-ins before it runs
    (its ``__init__`` refers to ``drawing_styles`` and ``drawing_utils`` by name)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != VISION:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        inner = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, s):
                return inner.create_module(s)

            def exec_module(self, module):
                for child, parent in DEFERRED.items():
                    if parent == VISION and isinstance(sys.modules.get(child), Deferred):
                        setattr(module, child.rsplit(".", 1)[1], sys.modules[child])
                inner.exec_module(module)

        spec.loader = Loader()
        return spec


def vision():
    """``mediapipe.tasks.python.vision`` (and ``mediapipe`` itself), imported with the modules of
    ``DEFERRED`` left for later."""
    with _lock:
        if "mediapipe" not in sys.modules:
            finder = _NamesDeferred()
            for child in DEFERRED:
                sys.modules.setdefault(child, _stand_in(child))
            sys.meta_path.insert(0, finder)
            try:
                importlib.import_module("mediapipe")
            except BaseException:
                for child in DEFERRED:
                    if isinstance(sys.modules.get(child), Deferred):
                        del sys.modules[child]
                raise
            finally:
                sys.meta_path.remove(finder)
    return importlib.import_module(VISION)
