"""The console scripts (``rtatl-detect``, ``rtatl-fetch-models``), their per-input runner and the cluster runner."""
