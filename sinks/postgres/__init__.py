"""The Postgres writer: versioned migrations and an idempotent, newer-only batch writer."""
