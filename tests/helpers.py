"""Small helpers shared by tests."""

import time


def wait_for(cond, proc, timeout: float = 300) -> bool:
    """Poll ``cond()`` until true; False if ``proc`` exits first or ``timeout`` passes."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False
