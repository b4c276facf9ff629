"""A seeded stream of hostile camera frames interleaved with valid ones; pure.

`fuzz_frames` yields `FuzzFrame` records for `camera.frames`: valid frames (the simulator's
rendered images, JPEG and PNG, with the headers the simulator writes) and, in between, every
kind of bad frame in `BAD_KINDS`: random bytes, empty and null values, truncated JPEG and PNG,
JPEG cut short and closed with an end marker, decompression bombs, images and headers that
lie about the size, wrong or unknown content types, frames over the service's size limit,
non-UTF-8, missing and absent headers, and absurd seq, capture stamp, calibration, size, schema
version and ids. Each bad frame carries the pattern of the error the service must dead-letter it
with (`FuzzFrame.error`), and every frame a unique ``seq`` (its index) where its seq header is
readable, so a result names its frame.

The same seed gives the same frames. Used by the fuzz suite (tests/integration) and
`roadstream bench fuzz` (`services.bench.fuzz_run`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2

from services.bench.fuzz_kinds import (
    BAD_KINDS,
    BAD_WEIGHTS,
    VALID_KINDS,
    VALID_WEIGHTS,
    FrameMaker,
    hostile_key,
    valid_frame,
)
from simulators.camera import Camera
from simulators.library import DEFAULT_SCENARIO, load_scenario
from simulators.render import encode_jpeg
from simulators.world import World

__all__ = ["BAD_KINDS", "VALID_KINDS", "FuzzBase", "FuzzFrame", "FuzzSpec", "fuzz_frames"]


@dataclass(frozen=True)
class FuzzFrame:
    """One `camera.frames` record of the fuzz and what the service must do with it.

    ``expect_valid``: served once on `perception.objects`; else dead-lettered, with an error
    message that, after the record's own ``topic[partition]@offset: `` prefix, matches the
    regular expression ``error``.
    """

    index: int
    kind: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    expect_valid: bool
    error: str = ""

    @property
    def size_bytes(self) -> int:
        """Value and headers [bytes]."""
        return len(self.value or b"") + sum(len(k) + len(v) for k, v in self.headers)


@dataclass(frozen=True)
class FuzzBase:
    """Valid encoded images of one camera, the material the fuzz cuts and lies about.

    ``small_pngs`` are the same pictures at a quarter of the size (``small_size`` [px]): a
    full-size PNG is about fourteen times the JPEG, and the kinds that only need some PNG
    (truncated, mislabelled) would fill the broker with them.
    """

    camera: Camera
    jpegs: tuple[bytes, ...]
    pngs: tuple[bytes, ...]
    small_pngs: tuple[bytes, ...]
    small_size: tuple[int, int]

    @classmethod
    def render(cls, scenario: str = DEFAULT_SCENARIO, *, images: int = 8, width: int = 640,
               height: int = 360) -> FuzzBase:
        """``images`` consecutive frames of a scenario's first camera at ``width`` x ``height``
        [px], encoded as the simulator does (JPEG quality 85) and as PNG."""
        sc = load_scenario(scenario)
        world = World.from_scenario(sc)
        cam = world.cameras[sc.cameras[0].id].scaled(width, height)
        small = (max(1, width // 4), max(1, height // 4))
        jpegs, pngs, small_pngs = [], [], []
        for _ in range(images):
            pixels = world.render(cam)
            jpegs.append(encode_jpeg(pixels, 85))
            pngs.append(cv2.imencode(".png", pixels)[1].tobytes())
            small_pngs.append(cv2.imencode(".png", cv2.resize(pixels, small))[1].tobytes())
            world.step(0.5)
        return cls(camera=cam, jpegs=tuple(jpegs), pngs=tuple(pngs),
                   small_pngs=tuple(small_pngs), small_size=small)


@dataclass(frozen=True)
class FuzzSpec:
    """What the fuzz produces, and the service limits its expectations are stated against.

    ``max_frame_bytes`` and ``max_pixels`` must be the perception service's settings of the
    same names: oversize frames are just above the first, bombs above the second.
    """

    seed: int
    run_id: str
    valid_fraction: float = 0.03
    # Above a full-size PNG (about 310 kB at 640x360), far below the broker's limit.
    max_frame_bytes: int = 512 << 10
    max_pixels: int = 4096 * 4096
    oversize_extra_bytes: int = 128 << 10  # oversize frames are up to this much over the limit


def fuzz_frames(n: int, base: FuzzBase, spec: FuzzSpec) -> Iterator[FuzzFrame]:
    """``n`` frames, valid ones at random places with probability ``spec.valid_fraction`` and bad
    ones of a kind drawn from `BAD_KINDS` (all equally likely but oversize, a tenth as likely).

    Deterministic for a seed; frames are built one at a time, so a long run holds one in memory.
    """
    if not 0.0 <= spec.valid_fraction <= 1.0:
        raise ValueError(f"valid_fraction {spec.valid_fraction} is not within 0 … 1")
    m = FrameMaker(base, spec)
    kinds = tuple(BAD_KINDS)
    for index in range(n):
        m.index = index
        if m.rng.random() < spec.valid_fraction:
            kind = m.rng.choices(VALID_KINDS, VALID_WEIGHTS)[0]
            image, headers = valid_frame(m, kind)
            yield FuzzFrame(index, kind, m.key(), image, tuple(headers), expect_valid=True)
            continue
        kind = m.rng.choices(kinds, BAD_WEIGHTS)[0]
        value, bad_headers, error = BAD_KINDS[kind](m)
        key = hostile_key(m)
        if key is None and value is None:  # Kafka needs a key or a value
            key = b""
        yield FuzzFrame(index, kind, key, value, tuple(bad_headers), expect_valid=False,
                        error=error)
