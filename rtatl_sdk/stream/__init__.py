"""Video streams: frame decoding (``video``), per-track temporal state (``temporal``, ``state``)."""
