"""What every command shares: settings, logging, printing results and clean errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from perception.classes import ModelLoadError
from services.broker.clients import BrokerUnavailableError
from services.broker.embedded import EmbeddedBrokerError
from services.messages import MessageError
from services.settings import Settings, SettingsError, load_settings
from simulators.library import ScenarioError

T = TypeVar("T")

#: Errors a user can fix: printed as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    SettingsError, BrokerUnavailableError, EmbeddedBrokerError,
    MessageError, FileNotFoundError, ScenarioError, ModelLoadError,
)


class CommandError(RuntimeError):
    """A command failed for a reason the message explains."""


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment and the optional --config file."""
    return load_settings(getattr(args, "config", None))


def setup_logging(level: str) -> None:
    """Plain logs on stderr; the Kafka client's connection chatter only when debugging."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for noisy in ("aiokafka", "faststream", "roadstream"):
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; Ctrl-C ends it cleanly."""
    return asyncio.run(coro)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file renamed into place, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def emit(result: dict[str, Any], *, as_json: bool, text: str) -> None:
    """Print a command's result as JSON (with --json) or as text."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(text.rstrip() + "\n")
