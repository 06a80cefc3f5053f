"""ambient: an always-on streaming speech recognition daemon with a tiny weight-shared Conformer."""

__version__ = "0.1.0"
__all__ = ["__version__"]
