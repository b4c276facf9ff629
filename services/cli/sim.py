"""`roadstream scenarios …` and `roadstream sim SCENARIO`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from services.broker.embedded import kafka
from services.catalog import build
from services.cli.common import emit, run_async, settings_from, write_json
from services.cli.progress import ScenarioProgress, progress_bar
from services.settings import Settings
from services.simulator.service import Simulator
from services.simulator.settings import SimulatorSettings
from simulators.library import DEFAULT_SCENARIO, list_scenarios, load_scenario

log = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `scenarios` and `sim`."""
    p = sub.add_parser("scenarios", help="the scenario library (list / show)",
                       description="List the scenario library or show one scenario.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = ssub.add_parser("list", help="list the scenarios")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    show = ssub.add_parser("show", help="show one scenario, fully expanded")
    show.add_argument("name", help="scenario name or path of a YAML file")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML-like text")
    show.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "sim", help="stream a scenario into Kafka",
        description="Render a scenario and publish camera.frames (JPEG + metadata headers), "
                    "vehicle.state and sim.ground_truth. Open loop: the ego follows its script; "
                    "closed loop: it obeys vehicle.control. Prints the run's metrics at the end.")
    p.add_argument("scenario", nargs="?", default=None,
                   help=f"scenario name or YAML file (default {DEFAULT_SCENARIO})")
    add_stream_options(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="also write the metrics as JSON (default runs/<run id>/sim_metrics.json)")
    p.set_defaults(func=cmd_sim)


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `sim` and `run`."""
    p.add_argument("--loop", choices=["open", "closed"], default=None,
                   help="open: scripted ego (default for sim); closed: obey vehicle.control")
    p.add_argument("--clock", choices=["realtime", "lockstep"], default=None,
                   help="realtime (default) or lockstep (deterministic)")
    p.add_argument("--speed", type=float, default=None, help="realtime speed factor (1.0)")
    p.add_argument("--vehicles", type=int, default=None, help="number of ego vehicles (1)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario seed")
    p.add_argument("--duration", type=float, default=None, help="override the duration [s]")


def sim_options(args: argparse.Namespace, **defaults: Any) -> SimulatorSettings:
    """SimulatorSettings from ROADSTREAM_SIM_*, then `defaults`, then the CLI flags."""
    flags = {"loop": args.loop, "clock": args.clock, "speed": args.speed,
             "vehicles": args.vehicles, "seed": args.seed, "duration_s": args.duration,
             "scenario": getattr(args, "scenario", None)}
    base = SimulatorSettings()
    update = {**defaults, **{k: v for k, v in flags.items() if v is not None}}
    return SimulatorSettings.model_validate({**base.model_dump(), **update})


async def stream(settings: Settings, bootstrap: str, options: SimulatorSettings,
                 run_id: str) -> dict[str, Any]:
    """Stream one scenario on the simulator service; return its metrics.

    The service's consumer group is this run's own (a group prefix with the run id), so two
    `roadstream sim` on one cluster each see every control; it starts at the control topic's
    end, and the stream starts once it holds its partitions, so no control is missed.
    """
    run_settings = settings.model_copy(
        update={"group_prefix": f"{settings.group_prefix}.{run_id}"})
    built = build("simulator", run_settings, bootstrap, options=options, repeat=False,
                  run_id=run_id, start_from="latest")
    simulator: Simulator = built.service
    await built.runtime.start()
    try:
        if not await built.runtime.wait_assigned(60):
            log.warning("sim: the control consumer got no partitions within 60 s; going on")
        name = load_scenario(options.scenario or DEFAULT_SCENARIO).name
        with progress_bar(f"streaming {name}") as bar:
            return await simulator.drive(options, run_id=run_id,
                                         progress=ScenarioProgress(bar))
    finally:
        await built.runtime.stop()


def cmd_sim(args: argparse.Namespace) -> int:
    """Stream a scenario and print its metrics."""
    settings = settings_from(args)
    options = sim_options(args)
    load_scenario(options.scenario or DEFAULT_SCENARIO)  # fail fast on a bad name or file
    run_id = uuid.uuid4().hex[:12]

    async def go() -> dict[str, Any]:
        async with kafka(settings) as bootstrap:
            return await stream(settings, bootstrap, options, run_id)

    result = run_async(go())
    out = args.out or settings.runs_dir / run_id / "sim_metrics.json"
    write_json(out, result)
    lines = [f"{result['scenario']} ({result['loop']} loop, {result['clock']}) run {run_id}"]
    lines += [format_vehicle(v) for v in result["vehicles"]]
    lines.append(f"written: {out}")
    emit(result, as_json=args.json, text="\n".join(lines))
    return 0


def format_vehicle(v: dict[str, Any]) -> str:
    """One line of metrics for a vehicle."""
    ttc = "-" if v["min_ttc_s"] is None else f"{v['min_ttc_s']:.2f} s"
    dist = "-" if v["min_distance_m"] is None else f"{v['min_distance_m']:.2f} m"
    crash = f"COLLISION at {v['impact_speed_mps']:.1f} m/s" if v["collision"] else "no collision"
    return (f"  {v['vehicle_id']}: {crash}, min TTC {ttc}, min distance {dist}, "
            f"progress {v['progress']:.0%}, {v['frames']} frames")


def cmd_list(args: argparse.Namespace) -> int:
    """List the library."""
    infos = list_scenarios()
    rows: list[dict[str, Any]] = [{"name": i.name, "description": i.description, "tags": list(i.tags),
             "duration_s": i.duration_s, "speeds_kph": i.speeds_kph, "condition": i.condition}
            for i in infos]
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(f"{r['name']:<{width}}  {r['condition']:<5}  {r['duration_s']:>5.1f} s  "
                     f"{r['description']}" for r in rows)
    emit({"scenarios": rows, "default": DEFAULT_SCENARIO}, as_json=args.json,
         text=text + f"\n\n{len(rows)} scenarios; default: {DEFAULT_SCENARIO}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one scenario."""
    scenario = load_scenario(args.name)
    data = json.loads(scenario.model_dump_json())
    if args.json:
        emit(data, as_json=True, text="")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0
