"""The arithmetic of `roadstream bench perception`: statistics, efficiency, pacing, goals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from services.bench import perception_stats as st


@given(hs.lists(hs.floats(0, 1e4), min_size=1, max_size=200), hs.floats(0, 100))
def test_percentile_is_numpys_linear_definition(values: list[float], q: float) -> None:
    assert st.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-6)


def test_percentile_rejects_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        st.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        st.percentile([1.0], 101)


def test_latency_summary_of_a_known_sample() -> None:
    sample = [float(v) for v in range(1, 101)]  # 1 … 100 ms
    summary = st.latency_summary(sample)
    assert summary["p50"] == 50.5
    assert summary["p99"] == 99.01
    assert summary["n"] == 100
    assert summary["max"] == 100.0


@pytest.mark.parametrize(
    ("mean", "expected"),
    [(1.0, 1), (1.4, 1), (1.6, 2), (3.0, 4), (3.9, 4), (5.9, 4), (6.0, 8), (12.0, 8), (0.2, 1)],
)
def test_nearest_batch_ties_go_to_the_larger(mean: float, expected: int) -> None:
    assert st.nearest_batch(mean, [1, 2, 4, 8]) == expected


def test_efficiency_divides_by_the_bare_rate_at_the_nearest_batch() -> None:
    bare = {1: 4.0, 2: 6.0, 4: 8.0, 8: 8.5}
    value, batch = st.efficiency(7.2, bare, batch_mean=3.7)
    assert batch == 4
    assert value == pytest.approx(0.9)
    value, batch = st.efficiency(5.0, bare, batch_mean=1.2)
    assert (batch, value) == (1, pytest.approx(1.25))  # a pipeline can beat batch 1 by batching


def test_floor_counts_two_hops() -> None:
    assert st.floor_ms(decode_ms=1.0, model_batch1_ms=200.0, hop_ms=2.5) == 206.0


def test_send_offsets_are_evenly_spaced_at_the_rate() -> None:
    offsets = st.send_offsets(rate_hz=4.0, duration_s=2.0)
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert len(st.send_offsets(rate_hz=0.2, duration_s=1.0)) == 1  # always at least one frame
    with pytest.raises(ValueError):
        st.send_offsets(0.0, 1.0)


def test_send_delay_waits_for_the_due_time_and_never_catches_up_in_a_burst() -> None:
    assert st.send_delay(now_s=10.0, start_s=10.0, offset_s=0.25) == 0.25
    assert st.send_delay(now_s=10.5, start_s=10.0, offset_s=0.25) == 0.0  # late: send now
    # A late frame does not shift later ones: frame 3 is still due at start + 0.75 s.
    assert st.send_delay(now_s=10.5, start_s=10.0, offset_s=0.75) == 0.25


def test_batches_are_regrouped_from_published_results() -> None:
    ms = 1_000_000
    outputs = [(1 * ms, 2, 50.0), (2 * ms, 2, 50.0), (5 * ms, 3, 70.0), (6 * ms, 3, 70.0),
               (7 * ms, 3, 70.0), (9 * ms, 1, 30.0),
               (12 * ms, 4, 90.0), (13 * ms, 4, 90.0)]  # the last batch was cut short
    batches = st.batches_from_outputs(outputs)
    assert batches == [st.Batch(2 * ms, 2, 50.0), st.Batch(7 * ms, 3, 70.0), st.Batch(9 * ms, 1, 30.0)]


def _steady(rate_batches_per_s: float, size: int, n: int) -> list[st.Batch]:
    period_ns = round(1e9 / rate_batches_per_s)
    return [st.Batch(end_ns=(k + 1) * period_ns, size=size, infer_ms=400.0) for k in range(n)]


def test_window_throughput_of_a_steady_pipeline() -> None:
    batches = _steady(rate_batches_per_s=2.0, size=4, n=40)  # 8 frames/s
    tp = st.window_throughput(batches, warmup_s=3.0, duration_s=10.0, parts=2)
    assert tp.fps == pytest.approx(8.0)
    assert tp.batch_mean == 4.0
    assert tp.window_s == pytest.approx(10.0)
    assert tp.frames == 80
    assert tp.window_fps == pytest.approx((8.0, 8.0))
    assert tp.period_ms == pytest.approx(500.0)
    assert tp.infer_ms_mean == 400.0  # 100 ms of each batch went to something other than the model


def test_window_throughput_ignores_a_slow_warm_up_and_stops_when_the_batches_do() -> None:
    slow = [st.Batch(end_ns=k * 2_000_000_000, size=1) for k in range(1, 3)]  # 0.5 frames/s
    fast = [st.Batch(end_ns=4_000_000_000 + k * 250_000_000, size=2) for k in range(1, 13)]
    tp = st.window_throughput(slow + fast, warmup_s=2.0, duration_s=100.0)
    assert tp.fps == pytest.approx(8.0)  # 2 frames per 0.25 s after the opening
    assert tp.window_s == pytest.approx(3.0)


def test_window_throughput_needs_batches_after_the_warm_up() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        st.window_throughput(_steady(1.0, 4, 3), warmup_s=5.0, duration_s=1.0)


def test_backlog_outlasts_warm_up_and_window_at_the_fastest_rate() -> None:
    n = st.backlog_frames(10.0, warmup_s=3.0, duration_s=15.0, max_batch=4)
    assert n >= 10.0 * 18.0


def test_goals_pass_and_fail_at_their_limits() -> None:
    met = st.goals(0.85, p99_ms=400.0, floor=200.0)
    assert met["efficiency"]["met"]
    assert met["p99_latency"]["met"]
    missed = st.goals(0.849, p99_ms=400.1, floor=200.0)
    assert not missed["efficiency"]["met"]
    assert not missed["p99_latency"]["met"]
    assert missed["p99_latency"]["limit_ms"] == 400.0
