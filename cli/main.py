"""``spakinect-pipeline``: run the ingress or a worker, migrate, create topics, send samples."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.check_config import PROCESSES
from cli.phi import add_commands as add_phi_commands
from console.cli import add_commands as add_console_commands
from spakinect_pipeline.config import ConfigError, KafkaSettings, LogSettings, load_settings
from spakinect_pipeline.logs import configure_logging
from streams.stages import STAGE_NAMES

if TYPE_CHECKING:
    from streams.settings import StreamsSettings


def _ingress(args: argparse.Namespace) -> None:
    from ingress.app import create_app, serve
    from ingress.settings import IngressSettings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(IngressSettings, **overrides)
    from ingress.metrics import multiprocess_dir, reset_multiprocess_dir

    if settings.workers > 1:
        from ingress.workers import serve_workers

        serve_workers(settings)
        return
    if (metrics_dir := multiprocess_dir()) is not None:
        reset_multiprocess_dir(metrics_dir)  # one process, but the operator chose the folder
    serve(create_app(settings, load_settings(KafkaSettings)), settings)


def _worker(args: argparse.Namespace) -> None:
    from streams.worker import run_worker

    run_worker(args.stage)


def _migrate(args: argparse.Namespace) -> None:
    import asyncpg

    from sinks.postgres.migrate import migrate
    from sinks.postgres.settings import PostgresSettings
    from spakinect_pipeline.postgres_problems import classify

    try:
        applied = asyncio.run(migrate(load_settings(PostgresSettings).owner_dsn()))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        problem = classify(exc)
        if problem is None:
            raise
        print(f"spakinect-pipeline: cannot migrate: {problem}", file=sys.stderr)
        sys.exit(1)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


def _topics(args: argparse.Namespace) -> None:
    from aiokafka.errors import KafkaError

    from spakinect_pipeline.kafka_problems import classify
    from streams.settings import StreamsSettings

    try:
        created = asyncio.run(
            create_all_topics(load_settings(KafkaSettings), load_settings(StreamsSettings))
        )
    except (KafkaError, OSError) as exc:
        print(f"spakinect-pipeline: cannot create the topics: {classify(exc)}", file=sys.stderr)
        sys.exit(1)
    print("created: " + (", ".join(created) if created else "nothing (all exist)"))


async def create_all_topics(kafka: KafkaSettings, streams: StreamsSettings) -> list[str]:
    """The pipeline's topics, then the stages' changelogs (compacted), so workers need not.

    With these in place a worker only describes its changelogs (and alters their
    settings if ``DEDUPE_WINDOW`` changed): it can run without topic-create rights.
    """
    from spakinect_pipeline.phi.key_store import ensure_key_topic, key_topic
    from spakinect_pipeline.topic_admin import align_topic_configs, changelog_config, ensure_topics
    from streams.stages import changelog_topic_names

    created = await ensure_topics(kafka)
    if await ensure_key_topic(kafka):  # compacted, one partition (patient-data-on-kafka.md)
        created.append(key_topic(kafka.topic_prefix))
    names = changelog_topic_names(streams.app_id)
    config = changelog_config(kafka, streams.dedupe_window)
    made = await ensure_topics(kafka, names, config)
    await align_topic_configs(kafka, [n for n in names if n not in made], config)
    return created + made


def _check_config(args: argparse.Namespace) -> None:
    from cli.check_config import check_config

    for line in check_config(args.process):
        print(line)


def _send_sample(args: argparse.Namespace) -> None:
    from cli.samples import send_samples

    sys.exit(send_samples(args.url, args.token))


def _rejected_replay(args: argparse.Namespace) -> None:
    from cli.phi import record_action
    from events.topics import Topics
    from ingress.replay_rejected import replay_rejected

    kafka = load_settings(KafkaSettings)
    record_action(
        "rejected.replay", f"topic:{Topics(kafka.topic_prefix).rejected}", {"dry_run": args.dry_run}
    )

    counts = asyncio.run(replay_rejected(kafka, dry_run=args.dry_run))
    verb = "would publish" if args.dry_run else "published"
    print(f"{verb}: {counts['published']}, unrouted: {counts['unrouted']}")
    if counts["unreadable"]:
        print(f"no longer readable (epoch key expired or destroyed): {counts['unreadable']}")
    for key, count in sorted(counts.items()):
        if key.startswith("still_refused:"):
            print(f"still refused ({key.partition(':')[2]}): {count}")


def _dead_letters(args: argparse.Namespace) -> list[Any]:
    from datetime import UTC, datetime

    from streams.dlq_tools import matches, parse_since, read_dead_letters

    since = parse_since(args.since, datetime.now(UTC))
    letters = asyncio.run(read_dead_letters(load_settings(KafkaSettings)))
    return [x for x in letters if matches(x, set(args.event_id or ()), since, args.stage)]


def _dlq_list(args: argparse.Namespace) -> None:
    from streams.dlq_tools import list_rows

    letters = _dead_letters(args)
    for line in list_rows(letters):
        print(line)
    print(f"{len(letters)} dead letter(s)")


def _dlq_replay(args: argparse.Namespace) -> None:
    from cli.phi import record_action
    from streams.dlq_tools import replay

    letters = _dead_letters(args)
    record_action(
        "dlq.replay",
        f"dlq:{args.stage or 'all'}",
        {"event_ids": [x.event_id for x in letters], "since": args.since},
    )
    sent = asyncio.run(replay(load_settings(KafkaSettings), letters, progress=sys.stderr.isatty()))
    print(f"replayed {sent} of {len(letters)} dead letter(s) to the stages that failed them")


def _schemas(args: argparse.Namespace) -> None:
    from events.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="spakinect-pipeline", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    ingress = sub.add_parser("ingress", help="run the webhook ingress (uvicorn)")
    ingress.add_argument("--host")
    ingress.add_argument("--port", type=int)
    ingress.set_defaults(func=_ingress)
    worker = sub.add_parser("worker", help="run one stage as a Faust worker")
    worker.add_argument("stage", choices=STAGE_NAMES)
    worker.set_defaults(func=_worker)
    sub.add_parser("migrate", help="apply the Postgres migrations").set_defaults(func=_migrate)
    sub.add_parser("topics", help="create the Kafka topics, changelogs included").set_defaults(
        func=_topics
    )
    check = sub.add_parser(
        "check-config",
        help="validate a process's settings as at start-up, without connecting to anything",
    )
    check.add_argument("process", choices=PROCESSES)
    check.set_defaults(func=_check_config)
    sample = sub.add_parser("send-sample", help="post the vendor samples to a running ingress")
    sample.add_argument(
        "--url",
        default=None,
        help="ingress base URL (default: INGRESS_URL, else http://127.0.0.1:8000)",
    )
    sample.add_argument("--token", default=None, help="shared secret, if the ingress needs one")
    sample.set_defaults(func=_send_sample)
    rejected = sub.add_parser("rejected", help="bodies the ingress refused (kept on a topic)")
    rejected_sub = rejected.add_subparsers(dest="action", required=True)
    replay = rejected_sub.add_parser("replay", help="publish those the models now accept")
    replay.add_argument("--dry-run", action="store_true", help="count only, publish nothing")
    replay.set_defaults(func=_rejected_replay)
    dlq = sub.add_parser("dlq", help="dead letters: list them, replay them to their stage")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("list", _dlq_list, "what failed, why and when (no payloads)"),
        ("replay", _dlq_replay, "re-deliver to the stage that failed"),
    ):
        action = dlq_sub.add_parser(name, help=text)
        action.add_argument("--event-id", action="append", help="only this event (repeatable)")
        action.add_argument("--since", help="ISO time, or a duration back from now (2h, 7d)")
        action.add_argument("--stage", choices=STAGE_NAMES)
        action.set_defaults(func=func)
    add_phi_commands(sub)
    add_console_commands(sub)
    schemas = sub.add_parser("schemas", help="export JSON Schemas of the envelope and payloads")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=_schemas)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        configure_logging(load_settings(LogSettings))
        args.func(args)
    except ConfigError as exc:
        print(f"spakinect-pipeline: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
