"""The gate side: the MAC layout, epochs that only grow, counters per vehicle, key choice."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest

from services.control.client import CommandVerifier
from services.control.signing import (
    CommandRejected,
    Reason,
    Signer,
    mac_input,
    new_epoch,
    signature_headers,
    verify,
)
from services.messages.examples import vehicle_control

KEY = b"k" * 32
OTHER = b"o" * 32


def raw(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


def test_mac_input_is_the_documented_layout() -> None:
    assert mac_input("key-1", 1790000093000, 7, b'{"a":1}') == (
        b'roadstream-control-v2\nkey-1\n1790000093000\n7\n{"a":1}')


def test_headers_carry_a_plain_hmac_sha256_of_that_layout() -> None:
    value = b'{"seq": 1}'
    headers = signature_headers(KEY, "key-1", 12, 7, value)
    expected = hmac.new(KEY, b"roadstream-control-v2\nkey-1\n12\n7\n" + value,
                        hashlib.sha256).hexdigest()
    assert headers == {"sig-key-id": "key-1", "sig-epoch": "12", "sig-counter": "7",
                       "sig-mac": expected}
    assert verify({"key-1": KEY}, raw(headers), value).freshness == (12, 7)


@pytest.mark.parametrize(("key_id", "epoch", "counter"), [
    ("a\nb", 1, 1), ("", 1, 1), ("x" * 65, 1, 1), ("k", -1, 1), ("k", 1, -1), ("k", 1, 2**63)])
def test_mac_input_refuses_what_would_make_the_layout_ambiguous(key_id: str, epoch: int,
                                                                counter: int) -> None:
    with pytest.raises(ValueError, match=r"key id|outside"):
        mac_input(key_id, epoch, counter, b"{}")


def test_epochs_only_grow_even_within_one_millisecond() -> None:
    epochs = [new_epoch() for _ in range(50)]
    assert all(b > a for a, b in itertools.pairwise(epochs))
    assert Signer({"k": KEY}, "k").epoch > epochs[-1]


def test_counters_are_per_vehicle_from_one_whatever_the_run() -> None:
    signer = Signer({"k": KEY}, "k", epoch=5)
    ego, other = vehicle_control(), vehicle_control().model_copy(update={"vehicle_id": "v2"})
    got = [signer.sign(c) for c in (ego, ego, other,
                                    ego.model_copy(update={"run_id": "next-run", "seq": 1}))]
    assert [(s.epoch, s.counter) for s in got] == [(5, 1), (5, 2), (5, 1), (5, 3)]
    assert got[0].value == ego.encode()
    assert got[0].headers["sig-epoch"] == "5"
    assert got[1].headers["sig-counter"] == "2"


def test_per_vehicle_keys_sign_that_vehicle_only() -> None:
    signer = Signer({"shared": KEY, "v2-key": OTHER}, "shared", epoch=1,
                    vehicle_key_ids={"v2": "v2-key"})
    ego = vehicle_control()
    v2 = ego.model_copy(update={"vehicle_id": "v2"})
    assert signer.sign(ego).headers["sig-key-id"] == "shared"
    signed = signer.sign(v2)
    assert signed.headers["sig-key-id"] == "v2-key"
    # v2 holds only its own key: the shared key's commands are not for it
    with pytest.raises(CommandRejected) as err:
        verify({"v2-key": OTHER}, raw(signer.sign(ego).headers), ego.encode())
    assert err.value.reason == Reason.UNKNOWN_KEY
    assert verify({"v2-key": OTHER}, raw(signed.headers), signed.value).key_id == "v2-key"


def test_a_signer_refuses_a_key_id_outside_its_keyring() -> None:
    with pytest.raises(ValueError, match="'k2' is not in the keyring"):
        Signer({"k": KEY}, "k2")
    with pytest.raises(ValueError, match="'gone' is not in the keyring"):
        Signer({"k": KEY}, "k", vehicle_key_ids={"ego": "gone"})


def test_a_restarted_gate_is_accepted_and_the_old_epoch_is_replay() -> None:
    cmd = vehicle_control()
    verifier = CommandVerifier({"k": KEY}, "ego")
    first = Signer({"k": KEY}, "k")
    old = [first.sign(cmd) for _ in range(3)]
    for signed in old:
        verifier.check(raw(signed.headers), signed.value, now_ns=cmd.stamp_ns)
    restarted = Signer({"k": KEY}, "k")
    fresh = restarted.sign(cmd)
    assert fresh.counter == 1
    assert restarted.epoch > first.epoch
    verifier.check(raw(fresh.headers), fresh.value, now_ns=cmd.stamp_ns)
    # every command of the earlier epoch, even with a larger counter than the new one
    for signed in [*old, first.sign(cmd)]:
        with pytest.raises(CommandRejected) as err:
            verifier.check(raw(signed.headers), signed.value, now_ns=cmd.stamp_ns)
        assert err.value.reason == Reason.REPLAYED


@pytest.mark.parametrize("header", ["sig-counter", "sig-epoch"])
@pytest.mark.parametrize("text", ["+7", "07", " 7", "7 ", "\u0667", "\uff17", "7\n", "-0", "7_0"])
def test_numbers_python_int_would_accept_are_refused(header: str, text: str) -> None:
    value = b"{}"
    headers = signature_headers(KEY, "k", 7, 7, value)
    headers[header] = text
    with pytest.raises(CommandRejected) as err:
        verify({"k": KEY}, raw(headers), value)
    assert err.value.reason == Reason.MALFORMED_HEADER
    assert header in str(err.value)
