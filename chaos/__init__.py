"""Fault injection: load plus one fault per run, then count what was acknowledged and kept."""
