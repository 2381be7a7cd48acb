"""spanbench: a database benchmark in which every second of a run is a span."""

__version__ = "0.1.0"
