"""`roadstream serve recorder`: record every primary topic to MCAP files, rotated by time.

Settings `ROADSTREAM_RECORDER_*`: the folder and the rotation period. Each file is written to a
temporary name and renamed when complete (see the recorder), so a crash never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.messages import TOPICS
from services.recording.recorder import Recorder
from services.runtime.service import ServiceRuntime
from services.settings import Settings

log = logging.getLogger(__name__)


class RecorderSettings(BaseSettings):
    """Where and how long each recording file is."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_RECORDER_", extra="forbid")

    folder: Path = Field(default=Path("runs/recordings"), description="Output folder.")
    rotate_s: float = Field(default=600.0, gt=0, le=86_400, description="Seconds per file.")


def build(settings: Settings, bootstrap: str, *,
          options: RecorderSettings | None = None) -> ServiceRuntime:
    """The recorder service: one MCAP file per rotation period until stopped."""
    options = options or RecorderSettings()
    frame = ServiceRuntime("recorder", settings, bootstrap)

    async def loop(stop: asyncio.Event) -> None:
        options.folder.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            out = options.folder / f"{time.strftime('%Y%m%d-%H%M%S')}.mcap"
            result = await Recorder(settings, bootstrap, TOPICS, out).run(
                stop, duration_s=options.rotate_s)
            log.info("recorder: %s: %d messages", out, result.messages)

    frame.background(loop)
    return frame
