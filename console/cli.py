"""``spakinect-pipeline console`` and ``spakinect-pipeline users add|remove|passwd``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

import asyncpg

from spakinect_pipeline.config import load_settings


def _console(args: argparse.Namespace) -> None:
    from console.app import create_app, serve
    from console.settings import ConsoleSettings
    from sinks.email.settings import EmailSettings
    from sinks.postgres.settings import PostgresSettings
    from spakinect_pipeline.config import KafkaSettings
    from spakinect_pipeline.phi.kafka_client import SealedFields
    from spakinect_pipeline.phi.settings import PhiSettings
    from streams.settings import StreamsSettings

    overrides = {"bind": args.bind} if args.bind else {}
    settings = load_settings(ConsoleSettings, **overrides)
    kafka, phi = load_settings(KafkaSettings), load_settings(PhiSettings)
    # The phi role sees sealed Kafka bodies opened only when the console holds the master key.
    master = phi.kafka_master() if phi.kafka_master_keys is not None else None
    app = create_app(
        settings,
        kafka,
        load_settings(PostgresSettings).dsn,
        phi.keyring(),
        load_settings(EmailSettings),
        load_settings(StreamsSettings).app_id,
        os.environ.get("INGRESS_URL"),
        sealed=SealedFields(kafka, master) if master is not None else None,
    )
    serve(app, settings)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("the passwords differ")
    return first


async def _with_pool(action: str, args: argparse.Namespace) -> None:
    from console import users
    from sinks.postgres.settings import PostgresSettings
    from spakinect_pipeline.audit import os_actor

    pool = await asyncpg.create_pool(load_settings(PostgresSettings).dsn, min_size=1, max_size=1)
    try:
        if action == "add":
            await users.add(pool, args.username, args.role, _password(args), os_actor())
        elif action == "remove":
            await users.remove(pool, args.username, os_actor())
        else:
            await users.passwd(pool, args.username, _password(args), os_actor())
    finally:
        await pool.close()


def _users(args: argparse.Namespace) -> None:
    from console.users import UserError

    try:
        asyncio.run(_with_pool(args.action, args))
    except UserError as exc:
        print(f"spakinect-pipeline users: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.action}: {args.username} done")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from console.auth import ROLES

    console = sub.add_parser("console", help="run the operator console (own port, CONSOLE_BIND)")
    console.add_argument("--bind", help="host:port (default CONSOLE_BIND, 127.0.0.1:8100)")
    console.set_defaults(func=_console)
    users = sub.add_parser("users", help="console users: add, remove, change a password")
    actions = users.add_subparsers(dest="action", required=True)
    for name, text in (
        ("add", "add a user"),
        ("remove", "remove a user"),
        ("passwd", "set a password"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("username")
        if name == "add":
            action.add_argument("--role", choices=ROLES, default="viewer")
        if name != "remove":
            action.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        action.set_defaults(func=_users)
