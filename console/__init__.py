"""The operator console: find any visit, see where it went, replay what failed (``console``)."""
