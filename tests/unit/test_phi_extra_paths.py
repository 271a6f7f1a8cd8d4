"""Patient data outside data.patient_details (PHI_EXTRA_PATHS) and the forget's email input."""

import io

import orjson
import pytest

from sinks.postgres.protect import Protection, open_payload, protect
from sinks.postgres.rows import batch_rows
from spakinect_pipeline.config import ConfigError
from spakinect_pipeline.phi.crypto import PhiDecryptError
from spakinect_pipeline.phi.paths import PathError, parse_paths, replace_path
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.phi.subject import patient_email

from .test_phi_protect import NOW, RING
from .test_rows import rec, visit

PATHS = parse_paths("data.notes, data.contact.name")


def noted_visit() -> dict[str, object]:
    body = visit(1714675200000)
    body["data"]["notes"] = "Jane Smith called about her results"
    body["data"]["contact"] = {"name": "Jane Smith", "phone_type": "mobile"}
    return body


def test_paths_are_dotted_object_keys_under_data_and_never_the_patient_details():
    assert PATHS == (("data", "notes"), ("data", "contact", "name"))
    for bad in ("notes", "data", "data.patient_details.email", "data.a[0]", "data..x"):
        with pytest.raises(PathError):
            parse_paths(bad)
    with pytest.raises(ConfigError, match="PHI_EXTRA_PATHS"):
        PhiSettings(extra_paths="data.a b").paths()


def test_replacing_an_absent_path_creates_nothing_and_leaves_the_body_as_it_was():
    body = {"data": {"x": 1}}
    assert replace_path(body, ("data", "notes"), None) == {"data": {"x": 1}}
    assert replace_path(body, ("data", "x", "y"), None) == {"data": {"x": 1}}  # scalar on the way
    assert replace_path(body, ("data", "x"), 2) == {"data": {"x": 2}}
    assert body == {"data": {"x": 1}}


def test_extra_paths_are_sealed_with_the_patient_and_open_again():
    rows = protect(batch_rows([rec(noted_visit())]), Protection(RING, NOW, extra_paths=PATHS))
    (event,) = rows.events
    assert b"Jane" not in event[7].encode()
    stored = orjson.loads(event[7])
    assert stored["data"]["contact"]["phone_type"] == "mobile"  # only the path, not its parent
    opened = open_payload(event[0], event[7], RING, PATHS)
    assert opened["data"]["notes"] == "Jane Smith called about her results"
    assert opened["data"]["contact"]["name"] == "Jane Smith"
    swapped = dict(stored, data=dict(stored["data"], notes=stored["data"]["contact"]["name"]))
    with pytest.raises(PhiDecryptError):  # each value is bound to its own path
        open_payload(event[0], swapped, RING, PATHS)


def test_without_the_setting_another_field_is_stored_as_it_came():
    rows = protect(batch_rows([rec(noted_visit())]), Protection(RING, NOW))
    assert "Jane Smith called" in rows.events[0][7]  # what PHI_EXTRA_PATHS is for


def test_a_forgotten_patients_extra_paths_are_written_null():
    marker = RING.gfe_marker("gfe_abc123xyz789")
    protection = Protection(RING, NOW, frozenset({marker}), extra_paths=PATHS)
    (event,) = protect(batch_rows([rec(noted_visit())]), protection).events
    stored = orjson.loads(event[7])
    assert stored["data"]["notes"] is None
    assert stored["data"]["contact"] == {"name": None, "phone_type": "mobile"}
    assert event[9] == NOW


def test_the_email_to_forget_comes_from_stdin_or_a_file_and_is_never_echoed(tmp_path):
    assert patient_email("jane@example.com", None, io.StringIO()) == "jane@example.com"
    assert patient_email("-", None, io.StringIO(" Jane@Example.com \nrest\n")) == "Jane@Example.com"
    path = tmp_path / "who"
    path.write_text("jane@example.com\n")
    assert patient_email(None, str(path), io.StringIO()) == "jane@example.com"
    assert patient_email(None, None, io.StringIO()) is None  # a forget by gfe_id
    with pytest.raises(ConfigError) as refused:
        patient_email("-", None, io.StringIO("not-an-address\n"))
    assert "not-an-address" not in str(refused.value)
    with pytest.raises(ConfigError, match="cannot read"):
        patient_email(None, str(tmp_path / "missing"), io.StringIO())
