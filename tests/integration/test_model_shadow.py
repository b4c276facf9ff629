"""Shadow deployment on a live perception service: `roadstream models shadow` beside production.

The service serves the shipped checkpoint. Rendered frames of a scenario stream at 10 Hz in
three phases of 20 frames: no shadow; in shadow, a copy of the production weights under another
version (the same model, so every detection must agree: agreement 1.0 on every window); in
shadow, a copy whose weights were perturbed (a different model: agreement below 1).
Production must give every frame exactly one result throughout; the shadow results go to
`perception.objects.shadow`, only for frames production served, and each frame production
served in shadow is either compared or counted as skipped in a `model_shadow_report`. The
figures (agreement, production and shadow inference times per frame with and without a shadow)
are printed. Last, promoting the perturbed copy is refused (below the floors) and then
overridden, and the override is on `safety.events`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from aiokafka import AIOKafkaProducer

from perception.architectures import build_from_spec
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.eval_run import DEFAULT_WEIGHTS
from perception.registry import ModelRegistry
from services.bench.perception_rig import render_frames
from services.cli.main import main
from services.messages import CAMERA_FRAMES, PerceptionObjects, SafetyEvent
from services.perception.service import build
from services.perception.settings import PerceptionSettings
from services.settings import Settings
from services.simulator import convert
from tests.integration.test_model_hot_swap import copy_as, wait_for
from tests.kafka_helpers import collect
from tests.schema_check import published, value_errors

pytestmark = pytest.mark.integration
PERIOD_S = 0.1  # 10 Hz camera
PHASE_FRAMES = 20
SCENARIO = "stop_and_go"  # a queue of cars: two or three objects a frame


def perturbed_copy(path: Path, version: str, *, scale: float = 0.3) -> Path:
    """The shipped weights, each multiplied by 1 + scale·N(0, 1) (seeded): another model.

    At 0.3 it finds about half of production's objects on the scenario's frames and nothing
    production does not (agreement 0.72 over 20 frames offline); at 0.1 its confident boxes
    were still production's.
    """
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    model = build_from_spec(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(1 + scale * torch.randn(param.shape, generator=noise))
    return save_checkpoint(path, model, ckpt.spec, model_version=version,
                           class_names=ckpt.class_names, metadata=ckpt.metadata)


async def stream(bootstrap: str, vehicle: str, run_id: str, seqs: range,
                 frames: list[Any]) -> None:
    """Send rendered frames ``seqs`` at 10 Hz, stamped as captured when sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for seq in seqs:
            image, cam = frames[seq % len(frames)]
            meta = convert.frame_meta(cam, vehicle_id=vehicle, seq=seq, stamp_ns=time.time_ns(),
                                      run_id=run_id)
            await producer.send_and_wait(CAMERA_FRAMES.name, image, key=meta.key,
                                         headers=meta.to_headers())
            await asyncio.sleep(PERIOD_S)
    finally:
        await producer.stop()


def reports_of(built: Any, version: str) -> list[dict[str, Any]]:
    return [r for r in built.counts()["shadow_reports"] if r["shadow"]["version"] == version]


def covered(built: Any, version: str) -> int:
    """Frames of ``version``'s reports: compared or skipped."""
    return sum(r["frames"] + r["frames_skipped"] for r in reports_of(built, version))


def per_frame_ms(results: list[PerceptionObjects]) -> float:
    return sum(r.latencies_ms["infer"] / r.latencies_ms["batch_size"] for r in results) / len(
        results)


async def test_shadow_beside_production_reports_agreement(
        kafka_bootstrap: str, unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    same, other = f"shadow-same-{unique}", f"shadow-other-{unique}"
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(DEFAULT_WEIGHTS, stage="production")
    registry.register(copy_as(tmp_path / "same.pt", same))
    registry.register(perturbed_copy(tmp_path / "other.pt", other))
    frames = render_frames(SCENARIO, PHASE_FRAMES, 640, 360)
    vehicle, run_id = f"ego-{unique}", f"shadow-{unique}"
    key = f"{vehicle}/front".encode()

    built = build(Settings(group_prefix=f"shadow{unique}"), kafka_bootstrap,
                  options=PerceptionSettings(weights=DEFAULT_WEIGHTS, latency_budget_ms=None,
                                             newest_per_camera=False, shadow_report_every_s=1.0),
                  start_from="latest")
    monkeypatch.setenv("ROADSTREAM_BOOTSTRAP_SERVERS", kafka_bootstrap)

    async def shadow(version: str) -> None:
        code = await asyncio.to_thread(main, ["models", "--registry", str(registry.root),
                                              "shadow", version])
        assert code == 0
        await wait_for(lambda: (built.counts()["shadow"] or {}).get("version") == version, 60)

    await built.runtime.start()
    try:
        assert await built.runtime.wait_assigned(30)
        await stream(kafka_bootstrap, vehicle, run_id, range(PHASE_FRAMES), frames)
        await shadow(same)
        await stream(kafka_bootstrap, vehicle, run_id, range(PHASE_FRAMES, 2 * PHASE_FRAMES),
                     frames)
        await wait_for(lambda: covered(built, same) == PHASE_FRAMES, 60)
        await shadow(other)
        await stream(kafka_bootstrap, vehicle, run_id,
                     range(2 * PHASE_FRAMES, 3 * PHASE_FRAMES), frames)
        await wait_for(lambda: covered(built, other) == PHASE_FRAMES, 60)
        total = 3 * PHASE_FRAMES
        out = await collect(kafka_bootstrap, "perception.objects", lambda r: r.key == key, total,
                            timeout_s=60)
        compared = sum(r["frames"] for r in reports_of(built, same) + reports_of(built, other))
        shadow_out = await collect(kafka_bootstrap, "perception.objects.shadow",
                                   lambda r: r.key == key, compared, timeout_s=60)
        events = await collect(kafka_bootstrap, "safety.events",
                               lambda r: b"model_shadow" in r.value and unique.encode() in r.value,
                               2 + len(built.counts()["shadow_reports"]), timeout_s=30)
        # promotion: refused below the floors (it never had its reports recorded), then
        # overridden, which is audited on safety.events before the registry changes
        promote = ["models", "--registry", str(registry.root), "promote", other]
        assert await asyncio.to_thread(main, promote) == 1
        assert registry.get(other)["stage"] == "candidate"
        reason = f"perturbed on purpose {unique}"
        assert await asyncio.to_thread(main, [*promote, "--override", reason]) == 0
        overrides = await collect(kafka_bootstrap, "safety.events",
                                  lambda r: b"model_promotion_override" in r.value
                                  and reason.encode() in r.value, 1, timeout_s=30)
    finally:
        await built.runtime.stop()

    production = {o.source.seq: o for o in (PerceptionObjects.decode(r.value) for r in out)}
    assert sorted(production) == list(range(total))  # every frame one result, none twice
    assert len(out) == total
    for record in shadow_out:
        assert value_errors(published("perception.objects.shadow.schema.json"), record.value) == []
    shadows = [PerceptionObjects.decode(r.value) for r in shadow_out]
    assert len(shadows) == compared
    by_version: dict[str, list[PerceptionObjects]] = {}
    for result in shadows:
        by_version.setdefault(result.model_version, []).append(result)
    assert set(by_version) == {same, other}
    # only frames production served while that shadow ran
    assert all(PHASE_FRAMES <= s.source.seq < 2 * PHASE_FRAMES for s in by_version[same])
    assert all(s.source.seq >= 2 * PHASE_FRAMES for s in by_version[other])
    # the shadow's results are tracked as production's are (its own trackers, started with it)
    assert sum(len(s.objects) for s in by_version[same]) > 0

    same_reports, other_reports = reports_of(built, same), reports_of(built, other)
    boxes = sum(r["production_boxes"] for r in same_reports)
    assert boxes > 0  # the scenario's frames hold objects
    for report in same_reports:
        if report["production_boxes"]:
            assert (report["agreement"], report["recall"], report["precision"]) == (1.0, 1.0, 1.0)
    other_matched = sum(r["matched"] for r in other_reports)
    other_total = sum(r["production_boxes"] + r["shadow_boxes"] for r in other_reports)
    other_agreement = 2 * other_matched / other_total
    assert other_total > 0
    assert 0.0 < other_agreement < 1.0
    assert any(row["recall"] is not None and row["recall"] < 1.0
               for r in other_reports for row in r["per_class"].values())

    audited = [SafetyEvent.decode(r.value) for r in events]
    for record in events:
        assert value_errors(published("safety.events.schema.json"), record.value) == []
    assert sorted(e.type for e in audited if e.type == "model_shadow_started") == [
        "model_shadow_started"] * 2
    reports = [e for e in audited if e.type == "model_shadow_report"]
    assert {e.details["shadow"]["version"] for e in reports} == {same, other}
    assert all(e.severity.value == "info" for e in reports)

    assert len(overrides) == 1
    override = SafetyEvent.decode(overrides[0].value)
    assert (override.severity.value, override.details["reason"]) == ("warning", reason)
    assert override.details["below_floors"][0].startswith("shadow agreement floor 0.9")
    assert registry.get(other)["history"][-1]["override"]["reason"] == reason

    before = [production[s] for s in range(PHASE_FRAMES)]
    during = [production[s] for s in range(PHASE_FRAMES, 2 * PHASE_FRAMES)]
    skipped = sum(r["frames_skipped"] for r in same_reports + other_reports)
    print(f"\nshadow: same model agreement 1.0 over {sum(r['frames'] for r in same_reports)} "
          f"frames ({boxes} production boxes); perturbed model agreement "
          f"{other_agreement:.3f} over {sum(r['frames'] for r in other_reports)} frames; "
          f"{skipped} frames skipped; production inference per frame "
          f"{per_frame_ms(before):.1f} ms without a shadow, {per_frame_ms(during):.1f} ms "
          f"beside one; shadow inference per frame "
          f"{per_frame_ms(by_version[same]):.1f} ms; shadow result after production's "
          f"{sum(s.latencies_ms['after_production'] for s in shadows) / len(shadows):.1f} ms "
          "(mean)")
