"""A progress bar on stderr for long commands (quiet when stderr is not a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(total_label: str) -> Iterator[Progress]:
    """A rich progress display writing to stderr."""
    console = Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                  console=console, transient=False, disable=not sys.stderr.isatty()) as bar:
        bar.log(total_label) if sys.stderr.isatty() else None
        yield bar


class ScenarioProgress:
    """Maps (scenario, fraction) callbacks onto one bar per scenario."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, name: str, fraction: float) -> None:
        """Update the bar of `name` to `fraction` in [0, 1]."""
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=1.0)
        self.bar.update(self.tasks[name], completed=fraction)
