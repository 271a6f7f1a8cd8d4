"""The console's pure parts: masks, sessions and CSRF, roles, the login limit, the chart,
the timeline's steps and user-name rules."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from console.auth import Session, Sessions, allows, generation
from console.chart import HEIGHT, chart, per_interval
from console.kafka_view import Found, partition_for
from console.mask import mask_email, mask_name, mask_patient
from console.settings import ConsoleSettings
from console.throttle import LoginThrottle, Verdict
from console.timeline import clean_step, email_step, entity_of, postgres_step, raw_steps
from console.users import UserError, check
from sinks.email.settings import EmailSettings
from spakinect_pipeline.config import ConfigError

AT = datetime(2026, 11, 28, 17, tzinfo=UTC)


def test_names_and_emails_are_masked() -> None:
    assert mask_name("Jane Smith") == "J*** S***"
    assert mask_name("Bartholomew Li") == mask_name("Bob Lancaster-Smythe")  # no lengths
    assert mask_name("Al") == "A***"
    assert mask_name(None) == "—"
    assert mask_email("jane.smith@example.com") == "j***@example.com"
    assert mask_email("no-at-sign") == "n***"
    assert mask_patient({"patient_name": "Jo Doe", "patient_email": "jo@x.org"}) == {
        "patient_name": "J*** D***",
        "patient_email": "j***@x.org",
    }


def test_a_session_round_trips_and_a_forged_one_is_refused() -> None:
    sessions = Sessions("k" * 32, 60)
    value = sessions.issue("ana")
    session = sessions.read(value)
    assert session is not None
    assert session.username == "ana"
    assert sessions.read(value[:-2] + "xx") is None
    assert Sessions("other" * 8, 60).read(value) is None
    assert sessions.read(None) is None


def test_a_session_expires_after_its_ttl() -> None:
    sessions = Sessions("k" * 32, 1)
    value = sessions.issue("ana")
    time.sleep(2.2)
    assert sessions.read(value) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    sessions = Sessions("k" * 32, 60)
    one, two = sessions.read(sessions.issue("ana")), sessions.read(sessions.issue("ana"))
    assert one is not None
    assert two is not None
    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, sessions.csrf_token(two))
    assert not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok(one, None)


def test_roles_are_a_ladder() -> None:
    assert allows("admin", "phi")
    assert allows("phi", "operator")
    assert not allows("operator", "phi")
    assert not allows("viewer", "operator")
    assert not allows("root", "viewer")


def test_guessing_backs_off_per_address_and_user_and_never_locks_out_others() -> None:
    throttle = LoginThrottle(attempts=2, window_s=100, backoff_s=10, max_delay_s=3)
    for now in (0, 1):
        assert throttle.judge("1.1.1.1", "admin", now) == Verdict()
        throttle.failed("1.1.1.1", "Admin", now)
    assert throttle.judge("1.1.1.1", "admin", 2).refuse_s == 9  # the guesser backs off
    assert throttle.judge("1.1.1.1", "bob", 2) == Verdict()  # its other names do not
    clean = throttle.judge("2.2.2.2", "admin", 2)  # another address: slowed, not refused
    assert clean.refuse_s == 0
    assert clean.delay_s == 0.5
    assert throttle.judge("1.1.1.1", "admin", 11) == Verdict(delay_s=0.5)  # its turn again
    throttle.failed("1.1.1.1", "admin", 11)
    assert throttle.judge("1.1.1.1", "admin", 12).refuse_s == 19  # doubled: 20 s from 11
    assert throttle.judge("3.3.3.3", "admin", 12).delay_s == 1.0
    for now in (12, 13, 14):
        throttle.failed("4.4.4.4", "admin", now)
    assert throttle.judge("3.3.3.3", "admin", 15).delay_s == 3  # capped
    assert throttle.judge("1.1.1.1", "admin", 200) == Verdict()  # the window has passed


def test_an_address_guessing_many_names_backs_off() -> None:
    throttle = LoginThrottle(attempts=2, window_s=100, backoff_s=10)
    for n in range(8):  # 4 x attempts, each name once
        assert throttle.judge("1.1.1.1", f"user{n}", n).refuse_s == 0
        throttle.failed("1.1.1.1", f"user{n}", n)
    assert throttle.judge("1.1.1.1", "someone", 8).refuse_s == 9
    assert throttle.judge("2.2.2.2", "someone", 8) == Verdict()


def test_an_attempt_counts_before_its_check_and_a_right_password_forgives_its_address() -> None:
    throttle = LoginThrottle(attempts=2, window_s=10, backoff_s=5)
    throttle.failed("1.2.3.4", "ana", 0)
    throttle.failed("1.2.3.4", "ana", 0)  # in flight at the same time: both count
    assert throttle.judge("1.2.3.4", "ana", 1).refuse_s > 0
    throttle.failed("5.6.7.8", "ana", 0)
    throttle.succeeded("1.2.3.4", "ana")
    assert throttle.judge("1.2.3.4", "ana", 1) == Verdict()  # 1 failure left, from 5.6.7.8
    assert throttle.judge("5.6.7.8", "ana", 1) == Verdict()


def test_a_csrf_token_expires_and_odd_text_is_refused_not_an_error() -> None:
    sessions = Sessions("k" * 32, 60, csrf_ttl_s=3600)
    proxied = Session("ana", "proxy:ana")
    token = sessions.csrf_token(proxied, now=1000)
    assert sessions.csrf_ok(proxied, token, now=1000 + 3599)
    assert not sessions.csrf_ok(proxied, token, now=1000 + 3600)
    assert not sessions.csrf_ok(Session("bob", "proxy:bob"), token, now=1001)
    made, _, mac = token.partition(".")
    assert not sessions.csrf_ok(proxied, f"{int(made) + 1}.{mac}", now=1001)
    for odd in ("é", f"{made}.é", "١٢٣.abc", "", None):
        assert not sessions.csrf_ok(proxied, odd, now=1001)


def test_a_new_password_or_epoch_makes_a_new_session_generation() -> None:
    sessions = Sessions("k" * 32, 60)
    session = sessions.read(sessions.issue("ana", generation("hash1", 0)))
    assert session is not None
    assert session.generation == generation("hash1", 0)
    assert generation("hash1", 1) != session.generation
    assert generation("hash2", 0) != session.generation


def test_settings_need_a_long_secret_and_a_host_port() -> None:
    with pytest.raises(ConfigError, match="CONSOLE_SECRET_KEY"):
        ConsoleSettings(secret_key="short").signing_key()
    settings = ConsoleSettings(bind="0.0.0.0:9000")
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    with pytest.raises(ValueError, match="host:port"):
        ConsoleSettings(bind="9000")


def test_user_names_roles_and_passwords_are_checked() -> None:
    check("ana.b@clinic", "phi", "x" * 12)
    for bad in ({"username": "Ana"}, {"username": "a b"}, {"username": ""}):
        with pytest.raises(UserError):
            check(bad["username"])
    with pytest.raises(UserError, match="role"):
        check("ana", "root")
    with pytest.raises(UserError, match="12 characters"):
        check("ana", "viewer", "short")


def test_the_chart_counts_per_hour_and_scales_to_the_peak() -> None:
    assert per_interval([0, 3, 3, 10]) == [3, 0, 7]
    drawn = chart([AT, AT], {"visit.completed": [2, 4], "treatment.updated": [0, 4]}, every=2)
    assert len(drawn.bars) == 3  # zero counts draw nothing
    assert sum(b.height for b in drawn.bars[1:]) == pytest.approx(HEIGHT - 16 - 22)  # the peak
    assert [v.text for v in drawn.values] == ["2", "8"]  # each column's total, written
    assert [t.text for t in drawn.counts] == ["0", "4", "8"]  # the count axis
    assert [t.text for t in drawn.times] == ["17:00"]  # every 2nd column labelled
    assert chart([], {}).bars == []


def test_partitions_follow_the_producers_default_partitioner() -> None:
    producers = DefaultPartitioner()
    for i in range(200):
        key = f"gfe_{i}".encode()
        assert partition_for(key, 6) == producers(key, list(range(6)), list(range(6)))


def test_event_ids_name_their_entity() -> None:
    assert entity_of("visit.completed:gfe_1:1714675200000") == ("visit.completed", "gfe_1")
    assert entity_of("garbage") is None


def found(offset: int) -> Found:
    return Found("t.visit-completed", 1, offset, AT, {"event_id": "e"}, None)


def test_a_later_delivery_is_a_dropped_duplicate_only_when_the_clean_topic_shows_it() -> None:
    steps = raw_steps([found(9), found(4)], published=1, clean_complete=True)
    assert [s.state for s in steps] == ["done", "skipped"]
    assert "t.visit-completed[1]@4" in steps[0].detail
    assert "dropped duplicate" in steps[1].detail
    again = raw_steps([found(9), found(4)], published=2, clean_complete=True)
    assert "published again" in again[1].detail
    for unread in (
        raw_steps([found(9), found(4)], 1, False),
        raw_steps([found(4), found(9)], 0, True),
    ):
        assert unread[1].detail == "delivered again (t.visit-completed[1]@9)"


def test_a_row_from_before_the_migration_has_no_clean_source_and_no_none() -> None:
    row = {
        "clean_topic": None,
        "clean_partition": None,
        "clean_offset": None,
        "disposition": "apply",
        "event": "treatment.updated",
        "event_id": "e",
        "inserted_at": AT,
    }
    for step in (postgres_step(row, None, None), clean_step(row, None, None, True)):
        assert "None" not in step.detail
        assert "not recorded" in step.detail


def test_a_missing_row_with_a_dead_letter_is_in_the_dlq_and_an_unread_topic_is_unknown() -> None:
    letter = Found("t.dlq", 0, 3, AT, {"event_id": "e", "stage": "postgres"}, None)
    dead = postgres_step(None, None, None, [letter])
    assert (dead.state, dead.at, dead.detail) == ("failed", AT, "no row: in the DLQ since then")
    assert "postgres stage holds it" in postgres_step(None, None, AT, []).detail
    unread = clean_step(None, None, AT, complete=False)
    assert unread.state == "unknown"
    assert "not found in the last 5000 messages" in unread.detail
    assert "dedupe stage holds it" in clean_step(None, None, AT, complete=True).detail


def test_the_email_step_says_why_not() -> None:
    email = EmailSettings(to=["clinic@example.test"])
    assert email_step("e", None, None, None, email, AT).state == "waiting"
    assert "stale" in email_step("e", "stale", None, None, email, None).detail
    erased = {"phi_redacted_at": AT, "location_id": None}
    assert "erased" in email_step("e", "apply", erased, None, email, None).detail
    held = email_step("e", "apply", None, None, email, AT)
    assert (held.state, held.at) == ("waiting", AT)
    assert "email stage holds it" in held.detail
    entry = {"done": ["clinic"], "at": 1000}
    sent = email_step("visit.completed:g:1", "apply", None, entry, email, None)
    assert (sent.state, sent.at) == ("done", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert "sent to the clinic (by today's settings: to c***@example.test" in sent.detail
    assert "Message-ID <visit.completed.g.1.clinic." in sent.detail
    for not_to_clinic in ({"done": ["patient"], "at": 1000}, {"at": 1000}):
        step = email_step("visit.completed:g:1", "apply", None, not_to_clinic, email, AT)
        assert (step.state, step.detail) == ("waiting", held.detail)
