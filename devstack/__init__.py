"""Real local services without Docker: Kafka (KRaft), PostgreSQL and an SMTP catcher.

Used by ``make up`` and by the integration tests' fixture layer.
"""
