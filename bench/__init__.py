"""Benchmarks (``make bench``): figures printed as a table and written as JSON."""
