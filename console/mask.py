"""Masks for patient names and emails, shown wherever the viewer has not revealed them (pure).

``Jane Smith`` becomes ``J*** S***`` and ``jane@example.com`` becomes
``j***@example.com``: enough for a support call to recognise a record, not
enough to read it off a shared screen. Every word gets three stars whatever
its length, so the mask does not tell a name's length.
"""

from __future__ import annotations


def mask_word(word: str) -> str:
    return word[:1] + "***" if word else ""


def mask_name(name: str | None) -> str:
    """Each word to its first letter and stars."""
    if not name:
        return "—"
    return " ".join(mask_word(w) for w in name.split())


def mask_email(email: str | None) -> str:
    """The local part masked, the domain kept (it names the clinic's provider, not a person)."""
    if not email:
        return "—"
    local, at, domain = email.rpartition("@")
    if not at:
        return mask_word(email)
    return f"{local[:1]}***@{domain}"


def mask_patient(patient: dict[str, str | None]) -> dict[str, str]:
    """Masked display values of the ``patient_*`` columns."""
    return {
        key: mask_email(value) if key.endswith("email") else mask_name(value)
        for key, value in patient.items()
    }
