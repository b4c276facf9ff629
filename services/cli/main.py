"""Entry point of the `roadstream` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.cli import (
    audit,
    bench,
    control,
    infra,
    models,
    perception_cmds,
    record,
    report,
    retrain,
    run,
    sim,
)
from services.cli.common import USER_ERRORS, CommandError, setup_logging

DESCRIPTION = """\
roadstream: event-driven streaming inference for autonomous perception.

Camera frames flow through Kafka into detection, planning and a command gate that
publishes signed vehicle control commands; a simulator replays road scenarios into
the same topics. Without ROADSTREAM_BOOTSTRAP_SERVERS every command starts its own
embedded Kafka-compatible broker.
"""

EPILOG = """\
settings: ROADSTREAM_* environment variables or --config FILE (YAML, TOML or .env);
          e.g. ROADSTREAM_BOOTSTRAP_SERVERS=kafka:9092 ROADSTREAM_DEVICE=cuda
examples:
  roadstream run                      the main job on the embedded broker
  roadstream broker                   run the embedded broker alone
  roadstream serve perception         one service against the configured broker
  roadstream topics                   the topic registry
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests)."""
    parser = argparse.ArgumentParser(
        prog="roadstream", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="settings file (YAML/TOML/.env); the environment wins over it")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run.add_parsers(sub)
    sim.add_parsers(sub)
    infra.add_parsers(sub)
    record.add_parsers(sub)
    bench.add_parsers(sub)
    audit.add_parsers(sub)
    control.add_parsers(sub)
    perception_cmds.add_parsers(sub)
    models.add_parsers(sub)
    retrain.add_parsers(sub)
    report.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the command, and turn user errors into one clear line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        code: int = args.func(args)
    except USER_ERRORS as exc:
        sys.stderr.write(f"roadstream {args.command}: error: {exc}\n")
        return 2
    except CommandError as exc:
        sys.stderr.write(f"roadstream {args.command}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
