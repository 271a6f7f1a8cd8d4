"""``spakinect-pipeline phi ...`` and ``audit list``: the operator's patient-data tools.

Every command that touches patient data writes its audit entry first
(:mod:`spakinect_pipeline.audit`); output names ids, counts and topics,
never a patient's name or email.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from spakinect_pipeline import audit
from spakinect_pipeline.config import ConfigError, KafkaSettings, load_settings
from spakinect_pipeline.phi.crypto import new_key_entry
from spakinect_pipeline.phi.key_store import key_topic
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.phi.shredding import (
    KeyTopicUnreachable,
    destroy_keys,
    expire_epoch_keys,
    subjects_of,
    verification_lines,
    verify,
)
from spakinect_pipeline.phi.subject import patient_email


def _dsn() -> str:
    from sinks.postgres.settings import PostgresSettings

    return load_settings(PostgresSettings).dsn


def record_action(action: str, target: str, details: Mapping[str, Any]) -> None:
    """Audit a CLI action before it runs (a failure to record stops the action)."""

    async def run() -> None:
        conn = await asyncpg.connect(_dsn(), timeout=15)
        try:
            await audit.record(conn, action, target, details=details)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(
            f"spakinect-pipeline: cannot write the audit log ({type(exc).__name__});"
            f" {action} not done",
            file=sys.stderr,
        )
        sys.exit(1)


def _new_key(args: argparse.Namespace) -> None:
    print(f"PHI_ENCRYPTION_KEYS={new_key_entry(args.key_id)}")
    print(f"PHI_INDEX_KEY={new_key_entry().split(':', 1)[1]}")
    print(
        "# keep both secret; to rotate, put a new PHI_ENCRYPTION_KEYS entry first, keep the old"
        " one after it, run `phi rotate-key`, then drop the old one. PHI_INDEX_KEY never changes.",
        file=sys.stderr,
    )


def _forget(args: argparse.Namespace) -> None:
    from sinks.postgres.erasure import forget
    from spakinect_pipeline.phi.copies import copies_lines, topic_copies

    phi = load_settings(PhiSettings)
    index = phi.blind_index()
    extra_paths = phi.paths()
    email = patient_email(args.patient_email, args.patient_email_file, sys.stdin)
    now = datetime.now(UTC)

    async def run() -> Any:
        conn = await asyncpg.connect(_dsn(), timeout=15)
        try:
            return await forget(
                conn,
                index,
                gfe_id=args.gfe_id,
                email=email,
                now=now,
                reason=args.reason,
                dry_run=args.dry_run,
                extra_paths=extra_paths,
            )
        finally:
            await conn.close()

    result = asyncio.run(run())
    verb = "would redact" if args.dry_run else "redacted"
    print(f"patient: {result.target}")
    print(f"visits found: {', '.join(result.gfe_ids) or 'none'}")
    print(f"{verb}: {len(result.visits)} gfe_visits row(s), {len(result.events)} event row(s)")
    kafka = load_settings(KafkaSettings)
    if args.dry_run:
        print("would record erasure markers so replays and duplicates stay redacted")
        print("would destroy the patient's data keys on the Kafka key topic")
    else:
        print(f"erasure markers recorded: {result.new_markers} new")
        _destroy_keys(kafka, phi, subjects_of(index, email, result.gfe_ids))
        if not email:
            print(
                "by gfe_id, only keys filed under the visit's gfe marker (a visit without an"
                " email) are destroyed: a visit with an email is sealed under the patient's key;"
                " forget by --patient-email to make it unreadable on Kafka"
            )
    for line in copies_lines(asyncio.run(topic_copies(kafka)), now):
        print(line)


def _destroy_keys(kafka: KafkaSettings, phi: PhiSettings, subjects: list[str]) -> None:
    """The Kafka half of a forget: after Postgres, so a re-run finishes what a failure left."""
    try:
        destroyed = asyncio.run(destroy_keys(kafka, subjects))
    except KeyTopicUnreachable as exc:
        print(
            f"spakinect-pipeline: Postgres is redacted, but the patient's Kafka keys are NOT"
            f" destroyed: {exc}. Run the same `phi forget` again once Kafka is reachable.",
            file=sys.stderr,
        )
        sys.exit(1)
    print(
        f"kafka keys destroyed: {len(destroyed)} (every sealed copy of the patient's fields, on"
        " every topic, stops opening; the key topic compacts the old records within 2 h)"
    )
    print(
        "refused and unrouted bodies cannot be matched to a patient: they stay readable until"
        f" their epoch key expires (PHI_UNPARSED_KEY_TTL: {phi.unparsed_key_ttl / 3600:g} h)"
    )


def _verify_forgotten(args: argparse.Namespace) -> None:
    from sinks.postgres.erasure import forget_target

    phi = load_settings(PhiSettings)
    index = phi.blind_index()
    email = patient_email(args.patient_email, args.patient_email_file, sys.stdin)
    kafka = load_settings(KafkaSettings)
    target = forget_target(index, args.gfe_id, email)
    record_action("phi.verify-forgotten", target, {"topic": key_topic(kafka.topic_prefix)})
    try:
        found = asyncio.run(verify(kafka, subjects_of(index, email, [args.gfe_id or ""])))
    except KeyTopicUnreachable as exc:
        print(f"spakinect-pipeline: {exc}; nothing verified", file=sys.stderr)
        sys.exit(1)
    print(f"patient: {target}")
    for line in verification_lines(kafka, found):
        print(line)
    if found.live:
        print("NOT forgotten on Kafka: run `phi forget` for this patient", file=sys.stderr)
        sys.exit(1)
    print("no live key left: every sealed copy on Kafka is unreadable")


def _rotate_key(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from sinks.postgres.rotate import Rotation, pending, rotate

    keyring = load_settings(PhiSettings).keyring()

    async def run() -> Rotation:
        pool = await asyncpg.create_pool(_dsn(), min_size=1, max_size=1, timeout=15)
        try:
            async with pool.acquire() as conn:
                todo = await pending(conn, keyring)
                await audit.record(
                    conn, "phi.rotate-key", f"key:{keyring.current_id}", details=todo
                )
            with tqdm(total=sum(todo.values()), unit="row", disable=args.quiet) as bar:
                return await rotate(pool, keyring, batch=args.batch, progress=bar.update)
        finally:
            await pool.close()

    result = asyncio.run(run())
    done = result.done
    print(
        f"re-sealed with key {keyring.current_id}: {done['gfe_visits']} gfe_visits row(s),"
        f" {done['spakinect_events']} event row(s)"
    )
    if any(result.unreadable.values()):
        for table, ids in result.unreadable.items():
            for row_id in sorted(ids):
                print(f"cannot open {table} {row_id} (key not configured, or damaged): left as is")
        print(
            "spakinect-pipeline: some rows did not open; add their key to PHI_ENCRYPTION_KEYS"
            " and run rotate-key again, or `phi forget` them",
            file=sys.stderr,
        )
        sys.exit(1)


def _sweep(args: argparse.Namespace) -> None:
    phi = load_settings(PhiSettings)
    if phi.retention is None and not phi.kafka_seal:
        raise ConfigError("PHI_RETENTION is not set and PHI_KAFKA_SEAL is off: nothing to sweep")
    if phi.retention is not None:
        _sweep_postgres(phi, phi.retention)
    if phi.kafka_seal:
        _sweep_epoch_keys(phi)


def _sweep_postgres(phi: PhiSettings, retention_s: float) -> None:
    from sinks.postgres.writer import PostgresSink

    sink = PostgresSink(
        _dsn(),
        keyring=phi.keyring(),
        retention_s=retention_s,
        sweep_batch=phi.sweep_batch,
        extra_paths=phi.paths(),
    )

    async def run() -> dict[str, int]:
        try:
            return await sink.sweep_once(actor=audit.os_actor())
        finally:
            await sink.stop()

    done = asyncio.run(run())
    print(
        f"redacted: {done['gfe_visits']} gfe_visits row(s), {done['spakinect_events']} event row(s)"
    )


def _sweep_epoch_keys(phi: PhiSettings) -> None:
    """The key janitor once: refused and unrouted bodies past PHI_UNPARSED_KEY_TTL stop opening."""
    kafka = load_settings(KafkaSettings)
    topic = key_topic(kafka.topic_prefix)
    ttl_h = f"{phi.unparsed_key_ttl / 3600:g} h"
    record_action("phi.sweep-epoch-keys", topic, {"ttl_s": phi.unparsed_key_ttl})
    try:
        destroyed = asyncio.run(expire_epoch_keys(kafka, phi.unparsed_key_ttl))
    except KeyTopicUnreachable as exc:
        print(f"spakinect-pipeline: {exc}; no epoch key destroyed", file=sys.stderr)
        sys.exit(1)
    print(
        f"epoch keys destroyed: {len(destroyed)} (refused and unrouted bodies of hours that"
        f" ended over PHI_UNPARSED_KEY_TTL ({ttl_h}) ago no longer open)"
    )


def _audit_list(args: argparse.Namespace) -> None:
    from streams.dlq_tools import parse_since

    since = parse_since(args.since, datetime.now(UTC))

    async def run() -> list[audit.AuditEntry]:
        conn = await asyncpg.connect(_dsn(), timeout=15)
        try:
            return await audit.entries(
                conn, action=args.filter_action, since=since, target=args.target, limit=args.limit
            )
        finally:
            await conn.close()

    found = asyncio.run(run())
    for line in audit.lines(found):
        print(line)
    print(f"{len(found)} audit entr{'y' if len(found) == 1 else 'ies'}")


def add_commands(sub: Any) -> None:
    """Register ``phi`` and ``audit`` on the root parser's subcommands."""
    phi = sub.add_parser("phi", help="patient data: keys, erasure, retention")
    phi_sub = phi.add_subparsers(dest="action", required=True)
    new_key = phi_sub.add_parser("new-key", help="print fresh PHI_ENCRYPTION_KEYS / PHI_INDEX_KEY")
    new_key.add_argument("--key-id", help="id of the new key (default: random)")
    new_key.set_defaults(func=_new_key)
    forget = phi_sub.add_parser("forget", help="erase one patient's data (idempotent)")
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--gfe-id")
    who.add_argument(
        "--patient-email",
        metavar="EMAIL|-",
        help="the patient's email; '-' reads it from stdin (keeps it out of the process list"
        " and the shell history)",
    )
    who.add_argument(
        "--patient-email-file",
        metavar="PATH",
        help="read the patient's email from the first line of this file",
    )
    forget.add_argument("--reason", help="why (kept in the audit log)")
    forget.add_argument("--dry-run", action="store_true", help="list what would be done")
    forget.set_defaults(func=_forget)
    check = phi_sub.add_parser(
        "verify-forgotten", help="check that no Kafka data key of a patient is left (exit 1 if so)"
    )
    subject = check.add_mutually_exclusive_group(required=True)
    subject.add_argument("--gfe-id")
    subject.add_argument(
        "--patient-email",
        choices=["-"],
        help="'-': read the patient's email from stdin",
    )
    subject.add_argument("--patient-email-file", metavar="PATH", help="first line: the email")
    check.set_defaults(func=_verify_forgotten)
    rotate = phi_sub.add_parser("rotate-key", help="re-seal old rows with the newest key")
    rotate.add_argument("--batch", type=int, default=500)
    rotate.add_argument("--quiet", action="store_true", help="no progress bar")
    rotate.set_defaults(func=_rotate_key)
    phi_sub.add_parser(
        "sweep",
        help="redact rows past PHI_RETENTION now; with PHI_KAFKA_SEAL on, destroy the epoch keys"
        " past PHI_UNPARSED_KEY_TTL",
    ).set_defaults(func=_sweep)
    audit_parser = sub.add_parser("audit", help="the audit log of patient-data access")
    audit_sub = audit_parser.add_subparsers(dest="action", required=True)
    listing = audit_sub.add_parser("list", help="newest first")
    listing.add_argument("--action", dest="filter_action", help="e.g. phi.forget or 'phi.*'")
    listing.add_argument("--since", help="ISO time, or a duration back from now (2h, 7d)")
    listing.add_argument("--target", help="exact, or a prefix ending in *")
    listing.add_argument("--limit", type=int, default=200)
    listing.set_defaults(func=_audit_list)
