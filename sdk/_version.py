"""The package version, kept in one place for pyproject.toml and runtime checks."""

__version__ = "0.1.0"
