"""Real local services without Docker: Kafka (KRaft), PostgreSQL and an SMTP catcher.

Used by ``make up`` and by the integration tests' fixture layer.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout: .cache/, bench/results/, ...
