"""The vendor's documented example payloads (as the vendor's webhook documentation shows them)."""

from __future__ import annotations

import copy
from typing import Any

SAMPLES: dict[str, dict[str, Any]] = {
    "visit.completed": {
        "event": "visit.completed",
        "timestamp": 1714675200000,
        "success": True,
        "data": {
            "location_id": "loc_12345",
            "gfe_id": "gfe_abc123xyz789",
            "status": "Completed",
            "pdf_link": "https://example-cdn.com/gfe/gfe_abc123xyz789.pdf",
            "requested_treatments": ["Botox Injection", "Dermal Filler"],
            "approved_treatments": ["Botox Injection"],
            "conditionally_approved_treatments": ["Dermal Filler"],
            "deferred_treatments": [],
            "patient_details": {
                "name": "Jane Smith",
                "first_name": "Jane",
                "last_name": "Smith",
                "email": "jane.smith@example.com",
            },
        },
    },
    "treatment.updated": {
        "event": "treatment.updated",
        "timestamp": 1714675200000,
        "success": True,
        "data": {
            "treatment_id": "treatment_001",
            "treatment_name": "Botox Injection",
            "action": "updated",
        },
    },
}


def sample_visit(gfe_id: str, timestamp: int = 1714675200000, **data: Any) -> dict[str, Any]:
    """The vendor's visit sample for another visit: its id, PDF link and any ``data`` fields."""
    body = copy.deepcopy(SAMPLES["visit.completed"])
    body["timestamp"] = timestamp
    body["data"].update(gfe_id=gfe_id, pdf_link=f"https://example-cdn.com/gfe/{gfe_id}.pdf", **data)
    return body
