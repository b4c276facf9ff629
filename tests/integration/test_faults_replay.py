"""Replay determinism: a recorded lockstep run, run again with the same keyring, gives the same
signed control stream, byte for byte, every field and header but those documented to differ.

The first run is recorded (recording.mcap); the second runs the same scenario with the same
run id and the same `ControlSettings`, each on an embedded broker of its own. Its
vehicle.control records, as a vehicle receives them, are compared with the recorded ones.
What differs, and why (docs/reliability.md, "Replay determinism"):

- the time base: lockstep stamps are the scenario's start on the wall clock plus simulation
  time, so every stamp of the second run (``stamp_ns``, ``valid_until_ns``, ``source.
  stamp_ns``) is the first run's plus one constant, the difference of the two starts;
- ``sig-epoch`` (the gate's start, wall clock in ms) and so ``sig-mac``, which signs it;
- the span-id part of ``traceparent``: its trace id comes from the frame's identity, its
  span id is the publish span's, random;
- ``correlation_id``, a random message id the Kafka client library (FastStream) writes.

Everything else, values and headers, must be equal bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from services.broker.embedded import kafka
from services.control.settings import ControlSettings
from services.control.signing import EPOCH_HEADER, MAC_HEADER, verify
from services.mainjob import RunOptions, run_main_job
from services.messages import VehicleControl
from services.recording.mcap_io import read_recording
from services.settings import Settings
from tests.fault_helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]

SCENARIO = str(Path(__file__).parents[1] / "fixtures" / "scenarios" / "short_stop_30kph.yaml")
DURATION_S = 2.0  # 40 front frames at 20 Hz: 40 commands
RUN_ID = "replay"  # the same in both runs (each on a broker of its own)
Signed = tuple[bytes | None, bytes, dict[str, bytes]]  # key, value, headers
SPAN_ID = "traceparent span id"
#: The headers (and header part) documented to differ between two runs; see the module.
DIFFER = frozenset({EPOCH_HEADER, MAC_HEADER, SPAN_ID, "correlation_id"})


def signed(key: bytes | None, value: bytes,
           headers: Iterable[tuple[str, bytes | None]]) -> Signed:
    """A record as compared: key, value and headers by name (none may repeat)."""
    pairs = [(str(k), bytes(v or b"")) for k, v in headers]
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), f"a header repeats: {names}"
    return key, value, dict(pairs)


async def lockstep_run(out_dir: Path, control: ControlSettings, *, record: bool) -> list[Signed]:
    """One lockstep run of the scenario; its vehicle.control records as the broker holds them."""
    async with kafka(Settings()) as bootstrap:
        summary = await run_main_job(Settings(), bootstrap, RunOptions(
            scenarios=(SCENARIO,), clock="lockstep", run_id=RUN_ID, out_dir=out_dir,
            record=record, duration_s=DURATION_S, control=control))
        assert summary.scenarios[0].control_timeouts == 0
        records = await read_topic(bootstrap, "vehicle.control", lambda r: True)
    return [signed(r.key, r.value, r.headers)
            for r in sorted(records, key=lambda r: seq_of(r.value))]


def with_span_id(headers: dict[str, bytes]) -> dict[str, bytes]:
    """The headers with traceparent's span id apart: version, trace id and flags stay."""
    out = dict(headers)
    if "traceparent" in out:
        version, trace_id, span_id, flags = out["traceparent"].split(b"-")
        out["traceparent"] = b"-".join((version, trace_id, b"", flags))
        out[SPAN_ID] = span_id
    return out


def seq_of(value: bytes) -> int:
    """A command's seq (per vehicle; the scenario has one)."""
    return int(json.loads(value)["seq"])


def shifted(value: bytes, offset_ns: int) -> bytes:
    """The command with every stamp moved by `offset_ns`, encoded as the gate encodes it."""
    command = VehicleControl.decode(value)
    assert command.source is not None
    return command.model_copy(update={
        "stamp_ns": command.stamp_ns + offset_ns,
        "valid_until_ns": command.valid_until_ns + offset_ns,
        "source": command.source.model_copy(
            update={"stamp_ns": command.source.stamp_ns + offset_ns})}).encode()


async def test_recorded_lockstep_run_replays_to_the_same_signed_control_stream(
        tmp_path: Path) -> None:
    control = ControlSettings.ephemeral()  # one keyring for both runs
    await lockstep_run(tmp_path / "recorded", control, record=True)
    recording = read_recording(tmp_path / "recorded" / "recording.mcap", ["vehicle.control"])
    recorded = [signed(r.key, r.value, r.headers)
                for r in sorted(recording, key=lambda r: seq_of(r.value))]
    replayed = await lockstep_run(tmp_path / "replayed", control, record=False)

    assert len(recorded) == len(replayed) == round(DURATION_S * 20)
    first = [VehicleControl.decode(value) for _, value, _ in recorded]
    second = [VehicleControl.decode(value) for _, value, _ in replayed]
    offset_ns = second[0].stamp_ns - first[0].stamp_ns
    epochs = [{h[EPOCH_HEADER] for _, _, h in stream} for stream in (recorded, replayed)]
    assert [len(e) for e in epochs] == [1, 1], epochs  # one gate start per run
    assert epochs[0] != epochs[1]
    keyring = control.keyring()
    differing: dict[str, int] = {}
    for i, ((key_a, value_a, head_a), (key_b, value_b, head_b)) in enumerate(
            zip(recorded, replayed, strict=True)):
        # Value: the recorded bytes are the canonical encoding, and the replayed bytes are
        # exactly those with the time base moved.
        assert VehicleControl.decode(value_a).encode() == value_a, i
        assert shifted(value_a, offset_ns) == value_b, (i, value_a, value_b)
        assert key_a == key_b, i
        split_a, split_b = with_span_id(head_a), with_span_id(head_b)
        assert split_a.keys() == split_b.keys(), (i, sorted(head_a), sorted(head_b))
        for name in split_a:
            if split_a[name] != split_b[name]:
                assert name in DIFFER, (i, name, split_a[name], split_b[name])
                differing[name] = differing.get(name, 0) + 1
        # Both streams verify with the one keyring.
        for value, headers in ((value_a, head_a), (value_b, head_b)):
            verify(keyring, headers.items(), value)
    # Each of those differs in every command (a new epoch, random ids), nothing else does.
    assert differing == dict.fromkeys(DIFFER, len(recorded)), differing
    print(f"\nreplay: {len(recorded)} commands, stamps moved by {offset_ns} ns, "
          f"differing headers {differing}")
