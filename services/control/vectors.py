"""The test vectors of the signed command path: docs/control-test-vectors.json.

A vehicle client in any language checks itself against them: for each case, start a
verifier with the file's keyring, vehicle id and policy and the case's last accepted
(epoch, counter), check the case's headers and value at the file's `now_ns`, and compare
the outcome with `expect` ("accept" or a rejection reason). `expected_mac` is the correct
MAC of the case's key id, epoch, counter and value (null where no key or no canonical
header gives one), to debug a MAC implementation on its own.

Everything here is fixed (keys, epochs, stamps), so the file is the same on every run;
`python -m services.control.vectors FILE` writes it, and a test fails when the committed
file differs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Final

from services.control.client import BOUNDS_MARGIN, VehicleBounds, VerifierPolicy
from services.control.signing import (
    COUNTER_HEADER,
    DOMAIN,
    EPOCH_HEADER,
    KEY_ID_HEADER,
    MAC_HEADER,
    Reason,
    mac,
    signature_headers,
)
from services.messages import ControlClock, ControlMode, FrameRef, VehicleControl

DEFAULT_PATH: Final = Path("docs/control-test-vectors.json")
VEHICLE: Final = "ego"
# Not secrets: published test keys (32 bytes each).
KEYRING: Final = {"k1": bytes(range(32)), "k2": b"roadstream-test-vector-key-two!!"}
EPOCH_1: Final = 1_790_000_000_000  # a gate start [ms since the Unix epoch]
EPOCH_2: Final = EPOCH_1 + 93_000  # the same gate, restarted 93 s later
STAMP_NS: Final = EPOCH_2 * 1_000_000 + 5_000_000_000
NOW_NS: Final = STAMP_NS + 50_000_000  # the vehicle's wall clock at the check
VALID_FOR_NS: Final = 200_000_000

Headers = list[tuple[str, str]]


def command(**changes: Any) -> VehicleControl:
    """A genuine normal-mode command for the vector vehicle; `changes` override fields."""
    base = VehicleControl(vehicle_id=VEHICLE, stamp_ns=STAMP_NS, seq=1,
                          valid_until_ns=STAMP_NS + VALID_FOR_NS, steering_tire_angle_rad=0.02,
                          steering_tire_rotation_rate_radps=0.05, target_speed_mps=13.5,
                          accel_mps2=0.4, jerk_mps3=1.5, mode=ControlMode.NORMAL,
                          source=FrameRef(seq=100, stamp_ns=STAMP_NS - 30_000_000),
                          run_id="vectors")
    return base.model_copy(update=changes)


def signed(value: bytes, *, key_id: str = "k1", epoch: int = EPOCH_2,
           counter: int = 1) -> Headers:
    """Genuine signature headers, in the order a gate sends them."""
    return list(signature_headers(KEYRING[key_id], key_id, epoch, counter, value).items())


def replace(headers: Headers, name: str, text: str) -> Headers:
    """The headers with one value replaced."""
    return [(k, text if k == name else v) for k, v in headers]


def _case(name: str, about: str, value: bytes, headers: Headers, expect: Reason | None, *,
          last: tuple[int, int] | None = None, require_wall_clock: bool = False,
          key_id: str = "k1", epoch: int = EPOCH_2, counter: int = 1,
          canonical: bool = True) -> dict[str, Any]:
    key = KEYRING.get(key_id) if canonical else None
    return {
        "name": name, "about": about,
        "last_accepted": None if last is None else {"epoch": last[0], "counter": last[1]},
        "require_wall_clock": require_wall_clock,
        "headers": [list(h) for h in headers],
        "value": value.decode(),
        "expected_mac": None if key is None else mac(key, key_id, epoch, counter, value),
        "expect": "accept" if expect is None else str(expect),
    }


def cases() -> list[dict[str, Any]]:
    """Every case: valid ones first, then one or more per rejection reason."""
    good = command().encode()
    h = signed(good)
    R = Reason
    out = [
        _case("genuine", "first command a vehicle sees", good, h, None),
        _case("next_counter", "counter 8 after (epoch 2, 7)", good, signed(good, counter=8),
              None, last=(EPOCH_2, 7), counter=8),
        _case("gap_in_counter", "a lost command leaves a gap: still greater", good,
              signed(good, counter=40), None, last=(EPOCH_2, 7), counter=40),
        _case("restarted_gate", "new larger epoch, counter from 1 after (epoch 1, 500)", good,
              h, None, last=(EPOCH_1, 500)),
        _case("rotated_key", "signed with the keyring's second key", good,
              signed(good, key_id="k2"), None, key_id="k2"),
        _case("headers_any_order", "headers are looked up by name", good, h[::-1], None),
    ]
    stop = command(mode=ControlMode.EMERGENCY_STOP, target_speed_mps=0.0, accel_mps2=-6.0,
                   jerk_mps3=-10.0).encode()
    out.append(_case("emergency_stop", "full braking inside the bounds", stop, signed(stop), None))
    sim = command(clock=ControlClock.SOURCE, stamp_ns=STAMP_NS - 17_000_000_000,
                  valid_until_ns=STAMP_NS - 16_800_000_000).encode()
    out += [
        _case("source_clock", "lockstep command: simulation time, expiry not checked on the "
              "wall clock", sim, signed(sim), None),
        _case("source_clock_refused", "the same, for a vehicle that requires the wall clock",
              sim, signed(sim), R.CLOCK, require_wall_clock=True),
    ]
    for name, text in (("leading_zero", "01"), ("plus_sign", "+1"), ("space", " 1"),
                       ("arabic_indic_digit", "\u0661"), ("empty", ""), ("hex", "0x1"),
                       ("above_int64", "9223372036854775808"), ("twenty_digits", "1" * 20)):
        out.append(_case(f"counter_{name}", f"counter header {text!r}: not canonical", good,
                         replace(h, COUNTER_HEADER, text), R.MALFORMED_HEADER,
                         canonical=False))
    out += [
        _case("epoch_leading_zero", "epoch header with a leading zero", good,
              replace(h, EPOCH_HEADER, "0" + str(EPOCH_2)), R.MALFORMED_HEADER, canonical=False),
        _case("mac_uppercase", "the right MAC in uppercase hex: not canonical", good,
              replace(h, MAC_HEADER, dict(h)[MAC_HEADER].upper()), R.MALFORMED_HEADER, canonical=False),
        _case("counter_twice", "two sig-counter headers", good, [*h, (COUNTER_HEADER, "1")],
              R.MALFORMED_HEADER, canonical=False),
        _case("no_epoch", "sig-epoch missing (an old gate's command)", good,
              [x for x in h if x[0] != EPOCH_HEADER], R.MISSING_HEADER, canonical=False),
        _case("unsigned", "no signature headers at all", good, [], R.MISSING_HEADER, canonical=False),
        _case("unknown_key", "key id not in the keyring", good,
              list(signature_headers(b"x" * 32, "k9", EPOCH_2, 1, good).items()),
              R.UNKNOWN_KEY, key_id="k9"),
        _case("tampered_value", "accel changed after signing", good.replace(
            b'"accel_mps2":0.4', b'"accel_mps2":2.4'), h, R.BAD_MAC),
        _case("tampered_counter", "counter raised after signing", good,
              replace(h, COUNTER_HEADER, "2"), R.BAD_MAC, counter=2),
        _case("tampered_epoch", "epoch raised after signing", good,
              replace(h, EPOCH_HEADER, str(EPOCH_2 + 1)), R.BAD_MAC, epoch=EPOCH_2 + 1),
        _case("wrong_key", "k1's id, another key's MAC", good,
              replace(h, MAC_HEADER, mac(KEYRING["k2"], "k1", EPOCH_2, 1, good)), R.BAD_MAC),
    ]
    junk = b"not json"
    other = command(vehicle_id="other").encode()
    out += [
        _case("malformed_value", "MAC-valid bytes that are not a command", junk, signed(junk),
              R.MALFORMED),
        _case("wrong_vehicle", "a genuine command for another vehicle", other, signed(other),
              R.WRONG_VEHICLE),
        _case("replay_same_epoch", "the counter last accepted, again", good, h, R.REPLAYED,
              last=(EPOCH_2, 1)),
        _case("replay_older_counter", "an older counter of the same epoch", good,
              signed(good, counter=6), R.REPLAYED, last=(EPOCH_2, 7), counter=6),
        _case("replay_earlier_epoch", "a large counter from an earlier gate start", good,
              signed(good, epoch=EPOCH_1, counter=900), R.REPLAYED, last=(EPOCH_2, 1),
              epoch=EPOCH_1, counter=900),
    ]
    for name, about, cmd, reason in (
        ("window_11_days", "valid_until 11 days after stamp",
         command(valid_until_ns=STAMP_NS + 11 * 86_400 * 10**9), R.VALIDITY_WINDOW),
        ("window_negative", "valid_until before stamp",
         command(valid_until_ns=STAMP_NS - 1), R.VALIDITY_WINDOW),
        ("expired", "valid_until 1 ns before now", command(
            stamp_ns=NOW_NS - VALID_FOR_NS - 1, valid_until_ns=NOW_NS - 1), R.EXPIRED),
        ("accel_1e6", "1e6 m/s²", command(accel_mps2=1e6), R.OUT_OF_BOUNDS),
        ("decel_8", "-8 m/s², beyond 6 × 1.25", command(accel_mps2=-8.0), R.OUT_OF_BOUNDS),
        ("speed_60", "60 m/s target", command(target_speed_mps=60.0), R.OUT_OF_BOUNDS),
        ("jerk", "jerk -13 m/s³", command(jerk_mps3=-13.0), R.OUT_OF_BOUNDS),
        ("steer", "steering 0.8 rad", command(steering_tire_angle_rad=0.8), R.OUT_OF_BOUNDS),
        ("steer_rate", "steering rate -1.1 rad/s",
         command(steering_tire_rotation_rate_radps=-1.1), R.OUT_OF_BOUNDS),
    ):
        value = cmd.encode()
        out.append(_case(name, about, value, signed(value), reason))
    edge = command(stamp_ns=NOW_NS - VALID_FOR_NS, valid_until_ns=NOW_NS).encode()
    out.append(_case("valid_until_equals_now", "expired means now > valid_until: equal passes",
                     edge, signed(edge), None))
    return out


def build() -> dict[str, Any]:
    """The whole vector file."""
    policy = VerifierPolicy()
    return {
        "about": "Test vectors of roadstream's signed vehicle.control commands; the rules are in "
                 "docs/vehicle-client.md.",
        "mac_layout": (DOMAIN.decode() + "{sig-key-id}\n{sig-epoch}\n{sig-counter}\n{value}"),
        "mac": "lowercase hex HMAC-SHA256(key, mac input)",
        "key_encoding": "standard base64 (RFC 4648, with padding) of the raw key bytes",
        "keyring": {k: base64.b64encode(v).decode() for k, v in KEYRING.items()},
        "vehicle_id": VEHICLE,
        "now_ns": NOW_NS,
        "now_clock": str(ControlClock.WALL),
        "max_window_ms": policy.max_window_ns / 1e6,
        "bounds_margin": BOUNDS_MARGIN,
        "bounds": dataclasses.asdict(VehicleBounds.from_limits()),
        "reasons_in_check_order": [str(r) for r in Reason],
        "header_names": [KEY_ID_HEADER, EPOCH_HEADER, COUNTER_HEADER, MAC_HEADER],
        "cases": cases(),
    }


def render() -> str:
    """The file's text."""
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write the vectors to argv[0] (default docs/control-test-vectors.json)."""
    path = Path(argv[0]) if argv else DEFAULT_PATH
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
