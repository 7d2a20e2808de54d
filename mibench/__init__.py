"""mibench: a benchmark harness for model inversion attacks and defenses on image classifiers."""

__version__ = "0.1.0"
