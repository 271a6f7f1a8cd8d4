"""``python -m devstack up``: the whole pipeline on real local services, in the foreground.

Ctrl-C or SIGTERM stops every child in order (ingress, workers, SMTP,
Postgres, Kafka) and leaves no process behind; children also die with us if
we are killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from console.local_admin import ensure_admin, session_key
from devstack.env_file import write_env_file
from devstack.process import ManagedProcess, ServiceError, _die_with_parent
from devstack.stack import (
    LocalServices,
    Ports,
    elapsed,
    kafka_security,
    pipeline_process,
    prepare_pipeline,
    shown_dsn,
    stack_env,
    stage_argv,
    wait_http,
)
from events.topics import SINK_NAMES
from spakinect_pipeline.config import ConfigError, load_settings
from streams.settings import StreamsSettings
from streams.stages import STAGE_NAMES

BANNER = """
  spakinect-pipeline is up
  ------------------------
  ingress        {INGRESS_URL}   (POST /webhooks/visit-completed, /webhooks/treatment-updated)
  console        {CONSOLE_URL}   (log in as admin; `spakinect-pipeline users add` for more)
  kafka          {KAFKA_BOOTSTRAP_SERVERS}   ({KAFKA_SECURITY})
  postgres       {SHOWN_DSN}
  smtp catcher   {SMTP_HOST}:{SMTP_PORT}  -> {MAIL_DIR}/*.eml
  logs           {LOGS}
  env file       {ENV_FILE}
  patient keys   {KEYS_FILE}  (PHI_ENCRYPTION_KEYS, PHI_INDEX_KEY; local only)

  WARNING: the ingress runs with INGRESS_ALLOW_UNAUTHENTICATED=true (local use only).
  Try: .venv/bin/spakinect-pipeline send-sample       Stop: Ctrl-C
"""


def enabled_stages() -> list[str]:
    """Every stage but the sinks ``SINKS`` leaves out (validated as the workers validate it)."""
    sinks = load_settings(StreamsSettings).sinks
    return [s for s in STAGE_NAMES if s not in SINK_NAMES or s in sinks]


def up(root: Path, cache: Path, ports: Ports, stages: list[str], *, secured: bool = False) -> int:
    started = time.monotonic()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _die_with_parent()  # make's death (even SIGKILL) stops us, and so our children

    services = LocalServices(root, cache, ports, secured=secured)
    processes: list[ManagedProcess] = []
    try:
        how = " (secured: Kafka SASL_SSL/SCRAM only, PostgreSQL TLS only)" if secured else ""
        print(
            f"starting Kafka, PostgreSQL and the SMTP catcher{how} (data in {root}) ...",
            flush=True,
        )
        services.start()
        print(f"services ready after {elapsed(started)}", flush=True)
        keys_file = root / "phi.env"
        if services.phi_keys_created:
            print(
                f"generated a local patient-data key into {keys_file} (local use only)", flush=True
            )
        else:
            print(f"using the local patient-data key in {keys_file}", flush=True)
        env = services.env()
        prepare_pipeline(env)
        ingress_url = f"http://127.0.0.1:{services.ports.ingress}"
        common = {
            **env,
            "INGRESS_ALLOW_UNAUTHENTICATED": "true",
            "INGRESS_PORT": str(services.ports.ingress),
            "STREAMS_STATE_DIR": str(root / "state"),
            "EMAIL_TO": os.environ.get("EMAIL_TO", "clinic@example.test"),
        }
        processes.append(pipeline_process("ingress", stage_argv("ingress"), common, services.logs))
        console_bind = os.environ.get("CONSOLE_BIND", f"127.0.0.1:{services.ports.console}")
        console_env = {
            **common,
            "CONSOLE_BIND": console_bind,
            "CONSOLE_SECRET_KEY": os.environ.get("CONSOLE_SECRET_KEY") or session_key(),
            "INGRESS_URL": ingress_url,
        }
        processes.append(pipeline_process("console", ["console"], console_env, services.logs))
        admin_password = ensure_admin(env["POSTGRES_DSN"])
        for index, stage in enumerate(stages):
            web_port = services.ports.web_base + index if services.ports.web_base else 0
            stage_env = {**common, "STREAMS_WEB_PORT": str(web_port)}
            processes.append(
                pipeline_process(f"worker-{stage}", stage_argv(stage), stage_env, services.logs)
            )
        for process in processes:
            process.start()
        wait_http(processes[0], f"{ingress_url}/readyz")
        values = stack_env(env, services.phi_env, ingress_url)  # keys stay in phi.env
        env_file = root / "stack.env"
        write_env_file(env_file, values)
        print(
            BANNER.format(
                **values,
                KAFKA_SECURITY=kafka_security(values),
                SHOWN_DSN=shown_dsn(values["POSTGRES_DSN"]),
                CONSOLE_URL=f"http://{console_bind}",
                LOGS=services.logs,
                ENV_FILE=env_file,
                KEYS_FILE=keys_file,
            ),
            flush=True,
        )
        if admin_password is not None:
            print(
                f"  console admin password (shown once): {admin_password}\n"
                "  change it: .venv/bin/spakinect-pipeline users passwd admin\n",
                flush=True,
            )
        print(f"ready after {elapsed(started)}", flush=True)
        while not stop.wait(1.0):
            dead = [p for p in processes if not p.alive()]
            if dead:
                for process in dead:
                    print(
                        f"{process.name} exited; see {process.log_path}:\n{process.log_tail()}",
                        file=sys.stderr,
                        flush=True,
                    )
                return 1
        return 0
    except ServiceError as exc:
        print(f"make up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping ...", flush=True)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.stop(grace=20)
        services.stop()
        print("stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--root", type=Path, default=Path(".data"))
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="use free ports instead of 9092/5432/1025/8000 (tests)",
    )
    parser.add_argument(
        "--secured",
        action="store_true",
        help="Kafka only over SASL_SSL/SCRAM and PostgreSQL only over TLS (Debian's "
        "postgresql), certificates from a local CA in ROOT/pki; stack.env gets the settings",
    )
    args = parser.parse_args()
    ports = Ports.free() if args.free_ports else Ports()
    if args.free_ports:
        ports.web_base = 0
    try:
        stages = enabled_stages()
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    sys.exit(up(args.root.resolve(), args.cache.resolve(), ports, stages, secured=args.secured))


if __name__ == "__main__":
    main()
