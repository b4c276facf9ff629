"""A tiny echo service used only by the tests to prove the service runtime.

It validates `vehicle.state` values and republishes them to a test topic. With `--delay-s`
it is slow enough to be killed mid-stream. Not a roadstream feature.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from services.messages import VEHICLE_STATE, TopicSpec, VehicleState
from services.runtime.delivery import Record
from services.runtime.service import ServiceRuntime
from services.settings import Settings

ECHO_OUT = TopicSpec(name="test.echo.out", key="vehicle_id", value=VehicleState, schema_version=1,
                     rate_hz=None, description="echo output (tests only)", producers=("echo",),
                     consumers=("tests",))


def build_echo(settings: Settings, bootstrap: str, *, delay_s: float = 0.0,
               **subscriber_kwargs: Any) -> ServiceRuntime:
    """The echo service on a runtime: parse, (sleep), republish."""
    runtime = ServiceRuntime("echo", settings, bootstrap)

    @runtime.consume(VEHICLE_STATE, **subscriber_kwargs)
    async def on_state(record: Record) -> None:
        state = VehicleState.decode(record.value, source=f"{record.topic}@{record.offset}")
        if delay_s:
            await asyncio.sleep(delay_s)
        await runtime.publish(ECHO_OUT, state, key=record.key)

    return runtime


def main() -> None:
    """Run the echo service until SIGTERM (used by the kill/restart test)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group-prefix", required=True)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(group_prefix=args.group_prefix)
    runtime = build_echo(settings, args.bootstrap, delay_s=args.delay_s, session_timeout_ms=6000,
                       heartbeat_interval_ms=1000)
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
