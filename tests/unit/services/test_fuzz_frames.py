"""The frame fuzz without Kafka: its frames are reproducible, each kind's expected error is what
the perception intake says, and the tally sorts every outcome (services.bench.fuzz*)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from services.bench.fuzz import BAD_KINDS, VALID_KINDS, FuzzBase, FuzzFrame, FuzzSpec, fuzz_frames
from services.bench.fuzz_tally import FuzzTally
from services.messages import FrameMeta, FrameRef, MessageError, PerceptionObjects
from services.perception.decode import decode_frames
from services.runtime.delivery import Record

SPEC = FuzzSpec(seed=5, run_id="unit")


@pytest.fixture(scope="module")
def base() -> FuzzBase:
    return FuzzBase.render(images=3)


@pytest.fixture(scope="module")
def frames(base: FuzzBase) -> list[FuzzFrame]:
    return list(fuzz_frames(3000, base, SPEC))


def test_same_seed_same_frames_and_another_seed_others(base: FuzzBase,
                                                       frames: list[FuzzFrame]) -> None:
    assert list(fuzz_frames(300, base, SPEC)) == frames[:300]
    other = list(fuzz_frames(300, base, FuzzSpec(seed=6, run_id="unit")))
    assert [f.kind for f in other] != [f.kind for f in frames[:300]]


def test_every_kind_is_drawn_and_valid_frames_are_interleaved(frames: list[FuzzFrame]) -> None:
    kinds = Counter(f.kind for f in frames)
    assert set(kinds) == set(BAD_KINDS) | set(VALID_KINDS), kinds
    valid = [f.index for f in frames if f.expect_valid]
    assert 0.02 * len(frames) < len(valid) < 0.04 * len(frames)
    assert valid[0] < 200
    assert valid[-1] > 2800
    oversize = [f for f in frames if f.kind == "oversize"]
    assert all(SPEC.max_frame_bytes < len(f.value or b"")
               <= SPEC.max_frame_bytes + SPEC.oversize_extra_bytes for f in oversize)


def test_intake_rejects_each_bad_frame_with_the_error_of_its_kind(frames: list[FuzzFrame]) -> None:
    """The service's own intake, in process: valid frames decode, each bad one is refused with
    an error that names its record and matches its kind (as the fuzz suite expects on the DLQ)."""
    wrong: list[str] = []
    for f in frames:
        record = Record(topic="camera.frames", partition=2, offset=f.index, key=f.key,
                        value=f.value or b"", headers=f.headers)
        decoded = decode_frames([record], max_bytes=SPEC.max_frame_bytes,
                                max_pixels=SPEC.max_pixels)[0]
        if f.expect_valid:
            if decoded.error is not None:
                wrong.append(f"{f.kind} #{f.index} rejected: {decoded.error}")
            continue
        prefix = f"camera.frames[2]@{f.index}: "
        message = str(decoded.error) if decoded.error is not None else "(decoded)"
        if not (message.startswith(prefix) and re.match(f.error, message[len(prefix):])):
            wrong.append(f"{f.kind} #{f.index}: expected /{f.error}/, got {message[:160]}")
    assert wrong == [], f"{len(wrong)} frames:\n" + "\n".join(wrong[:10])


def _frame(index: int, *, valid: bool, error: str = "") -> FuzzFrame:
    return FuzzFrame(index, "valid_jpeg" if valid else "random_bytes", b"k", b"", (),
                     expect_valid=valid, error=error)


def _result(seq: int, run_id: str = "unit") -> PerceptionObjects:
    return PerceptionObjects(vehicle_id="v", camera_id="c", source=FrameRef(seq=seq, stamp_ns=1),
                             stamp_ns=1, model_version="m", run_id=run_id)


def _dead(partition: int, offset: int, message: str, cls: str = "FrameError") -> dict[str, str]:
    return {"dlq-source-topic": "camera.frames", "dlq-source-partition": str(partition),
            "dlq-source-offset": str(offset), "dlq-error-class": cls, "dlq-error-message": message}


def test_tally_sorts_each_fate_and_matches_outcomes_that_came_before_the_ack() -> None:
    tally = FuzzTally("unit")
    tally.result(_result(0))  # before its frame's acknowledgement
    tally.dead_letter(_dead(1, 11, "camera.frames[1]@11: not a JPEG"))
    tally.sent(_frame(0, valid=True), 0, 10)
    tally.sent(_frame(1, valid=False, error="not a JPEG"), 1, 11)
    for index in range(2, 10):  # even: valid, odd: bad; offset 10 + index
        tally.sent(_frame(index, valid=index % 2 == 0, error="not a JPEG"), 0, 10 + index)
    assert tally.accounted == 2
    assert not tally.complete
    tally.result(_result(2))
    tally.result(_result(2))  # served twice
    tally.dead_letter(_dead(0, 13, "camera.frames[0]@13: not a JPEG"))
    tally.dead_letter(_dead(0, 13, "camera.frames[0]@13: not a JPEG"))  # dead-lettered twice
    tally.dead_letter(_dead(0, 14, "camera.frames[0]@14: not a JPEG"))  # a valid frame rejected
    tally.dead_letter(_dead(0, 19, "camera.frames[0]@99: not a JPEG"))  # a neighbour's error
    tally.result(_result(5))  # a bad frame served (and dead-lettered)
    tally.dead_letter(_dead(0, 15, "camera.frames[0]@15: not a JPEG"))
    tally.dead_letter(_dead(0, 17, "camera.frames[0]@17: not a JPEG", cls="KeyError"))
    tally.result(_result(6, run_id="other"))  # another run's: ignored
    tally.result(_result(99))
    tally.dead_letter(_dead(2, 99, "camera.frames[2]@99: x"))
    s = tally.summary()
    assert (s["ok"], s["duplicate"], s["rejected_valid"], s["wrong_error"], s["served_bad"],
            s["missing"]) == (2, 2, 1, 2, 1, 2)
    assert (s["duplicate_deliveries"], s["unmatched_results"], s["unmatched_dead_letters"]) == (3, 1, 1)
    assert (s["valid_sent"], s["valid_served"], s["bad_sent"], s["bad_dead_lettered_own_error"]) == (
        5, 2, 5, 1)
    assert s["kinds"]["valid_jpeg"]["served"] == 3


@pytest.mark.parametrize("calibration", ["[" * 100_000 + "]" * 100_000,  # deeper than any parser
                                         '{"fx": 1' + "0" * 5000 + "}"],  # more digits than int()
                         ids=["nested", "digits"])
def test_a_calibration_header_the_json_parser_gives_up_on_is_refused_by_name(
        base: FuzzBase, calibration: str) -> None:
    headers = [(k, calibration.encode() if k == "calibration" else v)
               for k, v in next(fuzz_frames(1, base, FuzzSpec(seed=1, run_id="u",
                                                              valid_fraction=1.0))).headers]
    with pytest.raises(MessageError, match="camera frame header 'calibration'"):
        FrameMeta.from_headers(headers)
