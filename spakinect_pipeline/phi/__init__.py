"""Patient data (PHI) lifecycle: encryption at rest, blind indexes, erasure markers, settings.

The crypto is pure (:mod:`spakinect_pipeline.phi.crypto`); what touches
Postgres lives with the writer in :mod:`sinks.postgres`.
"""
