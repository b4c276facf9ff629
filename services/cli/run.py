"""`roadstream run`: the main job (filled in as the services land)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `run`."""
    p = sub.add_parser("run", help="main job: broker + services + simulator, closed loop",
                       description="The main job.")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the main job."""
    del args
    return 0
