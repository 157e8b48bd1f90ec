"""mi-worker: the HIS ↔ NHSA gateway bridge."""
__version__ = "0.1.0"
