"""Email rendering, pure: which recipients, which content, which Message-ID.

Jinja2 with autoescape for HTML; templates can be overridden from
``EMAIL_TEMPLATE_DIR`` (same file names). The PDF link is shown only when it
is an http(s) URL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from events.envelope import Disposition, Envelope
from events.registry import VISIT_COMPLETED
from sinks.email.settings import EmailSettings

KINDS = ("clinic", "patient")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def make_environment(template_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("sinks.email", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def wants_email(envelope: Envelope) -> bool:
    """Only applied visits are emailed; stale and unsuccessful ones never are."""
    return envelope.event == VISIT_COMPLETED and envelope.disposition == Disposition.APPLY


def safe_pdf_link(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return value.strip()
    return None


def clinic_recipients(location_id: str | None, settings: EmailSettings) -> list[str]:
    if location_id and location_id in settings.to_by_location:
        return list(settings.to_by_location[location_id])
    return list(settings.to)


def message_id(event_id: str, kind: str, sender: str) -> str:
    """Deterministic per event and kind, so a repeated send is recognisably the same mail."""
    domain = sender.rpartition("@")[2] or "spakinect-pipeline.local"
    readable = _UNSAFE_ID.sub(".", event_id).strip(".")[:120]
    digest = hashlib.sha256(f"{kind}:{event_id}".encode()).hexdigest()[:12]
    return f"<{readable}.{kind}.{digest}@{domain}>"


@dataclass(frozen=True, slots=True)
class Outgoing:
    kind: str
    message: EmailMessage
    recipients: list[str]


def context(envelope: Envelope) -> dict[str, Any]:
    data = envelope.payload.get("data") or {}
    patient = data.get("patient_details") or {}
    return {
        "event_id": envelope.event_id,
        "gfe_id": data.get("gfe_id"),
        "location_id": data.get("location_id"),
        "status": data.get("status"),
        "patient_name": patient.get("name")
        or " ".join(p for p in (patient.get("first_name"), patient.get("last_name")) if p),
        "patient_first_name": patient.get("first_name"),
        "approved": data.get("approved_treatments") or [],
        "conditionally_approved": data.get("conditionally_approved_treatments") or [],
        "deferred": data.get("deferred_treatments") or [],
        "requested": data.get("requested_treatments") or [],
        "pdf_link": safe_pdf_link(data.get("pdf_link")),
        "completed_at": envelope.timestamp,
    }


def render(
    envelope: Envelope, kind: str, settings: EmailSettings, env: jinja2.Environment
) -> Outgoing | None:
    """The ``kind`` email for an applied visit, or None when it has no recipients."""
    values = context(envelope)
    if kind == "clinic":
        recipients = clinic_recipients(values["location_id"], settings)
    else:
        email = ((envelope.payload.get("data") or {}).get("patient_details") or {}).get("email")
        recipients = [email] if settings.patient_notifications and email else []
    if not recipients:
        return None
    message = EmailMessage()
    message["Subject"] = env.get_template(f"{kind}_visit.subject.j2").render(values).strip()
    message["From"] = settings.from_
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(envelope.event_id, kind, settings.from_)
    message["X-Spakinect-Event-Id"] = envelope.event_id
    message.set_content(env.get_template(f"{kind}_visit.txt.j2").render(values))
    message.add_alternative(
        env.get_template(f"{kind}_visit.html.j2").render(values), subtype="html"
    )
    return Outgoing(kind, message, recipients)
