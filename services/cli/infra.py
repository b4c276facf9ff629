"""`roadstream broker`, `roadstream serve`, `roadstream docs` and `roadstream topics`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from services.broker.clients import ensure_topics, wait_for_brokers
from services.broker.embedded import kafka
from services.catalog import SERVICES, build
from services.cli.common import CommandError, emit, run_async, settings_from
from services.control.settings import load_control_settings
from services.docs import write_docs
from services.messages import ALL_TOPICS
from services.runtime.process import freeze_heap


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the infrastructure commands."""
    p = sub.add_parser(
        "broker", help="run the embedded Kafka-compatible broker alone",
        description="Start the embedded broker (memory only, loopback), create every registry "
                    "topic, print the bootstrap address and serve until Ctrl-C. Point other "
                    "roadstream processes at it with ROADSTREAM_BOOTSTRAP_SERVERS=<address>.")
    p.add_argument("--json", action="store_true", help="print the address as JSON")
    p.set_defaults(func=cmd_broker)

    names = ", ".join(f"{n} ({e.summary})" for n, e in SERVICES.items())
    p = sub.add_parser("serve", help="run one service against the configured broker",
                       description=f"Run one service until SIGTERM/Ctrl-C. Services: {names}.")
    p.add_argument("service", choices=list(SERVICES), metavar="SERVICE",
                   help=f"one of: {', '.join(SERVICES)}")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("docs", help="write JSON Schemas and the AsyncAPI document to docs/",
                       description="Generate docs/schemas/*.json and docs/asyncapi.json from "
                                   "the message contract (deterministic output).")
    p.add_argument("--out", type=Path, default=Path("docs"), help="output folder (docs)")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("topics", help="list the topic registry",
                       description="Every topic with its key, value, schema version and rate.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--create", action="store_true",
                   help="create missing topics on the configured cluster "
                        "(ROADSTREAM_BOOTSTRAP_SERVERS) with ROADSTREAM_TOPIC_PARTITIONS")
    p.set_defaults(func=cmd_topics)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker until interrupted."""
    settings = settings_from(args).model_copy(update={"bootstrap_servers": ""})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with kafka(settings) as bootstrap:
            emit({"bootstrap_servers": bootstrap, "topics": [t.name for t in ALL_TOPICS]},
                 as_json=args.json,
                 text=f"embedded broker ready: {bootstrap}\n"
                      f"  {len(ALL_TOPICS)} topics, {settings.topic_partitions} partitions each\n"
                      f"  use it: export ROADSTREAM_BOOTSTRAP_SERVERS={bootstrap}\n"
                      "  stop: Ctrl-C (memory only: everything is gone on exit)")
            sys.stdout.flush()
            await stop.wait()

    run_async(serve())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run one service of the process table in this process, until SIGTERM/Ctrl-C."""
    settings = settings_from(args)
    if args.service == "planning":
        # The gate signs every command: without a keyring it stops here, before any broker
        # is contacted, with the one line saying what to set.
        load_control_settings().keyring()

    async def serve() -> None:
        async with kafka(settings) as bootstrap:
            runtime = build(args.service, settings, bootstrap).runtime
            freeze_heap()  # built: its imports, model and clients live as long as the process
            await runtime.run()

    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve())
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """Write the generated contract docs."""
    for path in write_docs(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


def _rate(rate_hz: object) -> str:
    return f"{rate_hz:g} Hz" if isinstance(rate_hz, float) else "events"


def cmd_topics(args: argparse.Namespace) -> int:
    """Print the registry; with --create, create the missing topics on the cluster."""
    if args.create:
        settings = settings_from(args)
        if settings.embedded:
            raise CommandError("--create needs ROADSTREAM_BOOTSTRAP_SERVERS (the embedded "
                               "broker creates its topics itself)")
        bootstrap = ",".join(settings.servers)

        async def create() -> list[str]:
            await wait_for_brokers(settings, bootstrap)
            return await ensure_topics(settings, bootstrap)

        created = run_async(create())
        sys.stdout.write(f"created {len(created)} topics on {bootstrap}: "
                         f"{', '.join(created) or '(all existed)'}\n")
    rows: list[dict[str, Any]] = [
        {"name": t.name, "key": t.key, "value": t.value.__name__ if t.value else "bytes",
             "schema_version": t.schema_version, "rate_hz": t.rate_hz,
             "producers": list(t.producers), "consumers": list(t.consumers)} for t in ALL_TOPICS]
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(f"{r['name']:<{width}}  key={r['key']:<22} value={r['value']:<18} "
                     f"v{r['schema_version']}  "
                     f"{_rate(r['rate_hz'])}" for r in rows)
    emit({"topics": rows}, as_json=args.json, text=text)
    return 0
