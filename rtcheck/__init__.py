"""rtcheck: DICOM-RT plan compliance checking with accurate dose-volume histograms."""

# The one place the version is written: pyproject.toml reads it from here (a literal,
# not importlib.metadata, whose import costs ~30 ms on every command).
__version__ = "0.1.0"

__all__ = ["__version__"]
