"""spakinect-pipeline: Spakinect webhooks into Kafka streams, Postgres tables and emails."""

__version__ = "0.1.0"
