from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.envelope import Disposition, Envelope
from events.samples import SAMPLES
from sinks.email.render import make_environment, message_id, render, safe_pdf_link, wants_email
from sinks.email.settings import EmailSettings


def envelope(**data) -> Envelope:
    payload = dict(SAMPLES["visit.completed"])
    payload["data"] = dict(payload["data"], **data)
    return Envelope(
        event_id="visit.completed:gfe_abc123xyz789:1714675200000",
        event="visit.completed",
        received_at=datetime.now(UTC),
        disposition=Disposition.APPLY,
        payload=payload,
    )


SETTINGS = EmailSettings(
    EMAIL_FROM="gfe@clinic.test",
    to=["front@clinic.test"],
    to_by_location={"loc_9": ["loc9@clinic.test"]},
)


def text_and_html(outgoing):
    parts = {p.get_content_type(): p.get_content() for p in outgoing.message.iter_parts()}
    return parts["text/plain"], parts["text/html"]


def test_clinic_email_has_patient_location_decisions_and_pdf():
    out = render(envelope(), "clinic", SETTINGS, make_environment(None))
    text, html = text_and_html(out)
    for body in (text, html):
        assert "Jane Smith" in body
        assert "loc_12345" in body
        assert "Botox Injection" in body
        assert "Dermal Filler" in body
        assert "https://example-cdn.com/gfe/gfe_abc123xyz789.pdf" in body
    assert out.recipients == ["front@clinic.test"]
    assert "Jane" not in out.message["Subject"]


def test_html_is_escaped_and_unicode_renders():
    out = render(
        envelope(
            patient_details={
                "name": "Zoë <script>x</script>",
                "first_name": "Zoë",
                "last_name": "Ø",
                "email": "z@example.test",
            }
        ),
        "clinic",
        SETTINGS,
        make_environment(None),
    )
    text, html = text_and_html(out)
    assert "Zoë" in text
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        ("https://a.test/x.pdf", True),
        ("http://a.test/x.pdf", True),
        ("javascript:alert(1)", False),
        ("ftp://a.test/x.pdf", False),
        (None, False),
    ],
)
def test_only_http_pdf_links(link, shown):
    assert (safe_pdf_link(link) is not None) is shown


def test_recipients_per_location_fall_back_to_email_to():
    out = render(envelope(location_id="loc_9"), "clinic", SETTINGS, make_environment(None))
    assert out.recipients == ["loc9@clinic.test"]


def test_patient_email_only_when_enabled():
    env = make_environment(None)
    assert render(envelope(), "patient", SETTINGS, env) is None
    enabled = SETTINGS.model_copy(update={"patient_notifications": True})
    assert render(envelope(), "patient", enabled, env).recipients == ["jane.smith@example.com"]


def test_message_id_is_deterministic_per_event_and_kind():
    a = message_id("visit.completed:g:1", "clinic", "x@clinic.test")
    assert a == message_id("visit.completed:g:1", "clinic", "x@clinic.test")
    assert a != message_id("visit.completed:g:1", "patient", "x@clinic.test")
    assert a.startswith("<visit.completed.g.1.")
    assert a.endswith("@clinic.test>")


def test_templates_can_be_overridden(tmp_path: Path):
    (tmp_path / "clinic_visit.subject.j2").write_text("Custom {{ gfe_id }}")
    out = render(envelope(), "clinic", SETTINGS, make_environment(tmp_path))
    assert out.message["Subject"] == "Custom gfe_abc123xyz789"


def test_only_applied_visits_are_emailed():
    assert wants_email(envelope())
    stale = envelope().model_copy(update={"disposition": Disposition.STALE})
    assert not wants_email(stale)
