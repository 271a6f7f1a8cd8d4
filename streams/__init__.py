"""Faust stages: the dedupe stage and the sink runners, each its own consumer group."""
