"""Native libraries' start-up lines kept off stderr.

MediaPipe, TensorFlow Lite and absl/glog write straight to file descriptor 2 when a graph is
created ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ..."); no
environment variable of theirs silences every line. ``native_logs()`` points descriptor 2 at
a temporary file while such a block runs, then logs what was caught at DEBUG on the
``rtatl_sdk.native`` logger. When that logger is enabled for DEBUG (``rtatl-detect --verbose``)
nothing is caught and the lines appear as they are written. If the block raises, the caught
text goes back to stderr, since it may say why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading

log = logging.getLogger("rtatl_sdk.native")
_lock = threading.RLock()


@contextlib.contextmanager
def native_logs():
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    with _lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if failed and text:
                sys.stderr.write(text)
            for line in text.splitlines():
                log.debug("%s", line)
