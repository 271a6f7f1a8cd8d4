"""Sinks behind one small protocol; each module owns and classifies its errors."""
