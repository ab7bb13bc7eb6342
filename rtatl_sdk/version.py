"""The project's version: the one place it is written (pyproject.toml and model cards read it)."""

__version__ = "0.2.0"
