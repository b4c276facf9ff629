"""The kinds of camera frame the fuzz makes, bad and valid, each from one seeded random source.

Each bad kind's builder returns the value, the headers and the pattern of the error the
perception service must dead-letter it with (the text after the record's own
``topic[partition]@offset: ``). See `services.bench.fuzz`, which draws the kinds.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from perception.image_header import JPEG_SOI, PNG_SIGNATURE
from services.bench.hostile_images import bomb_png, claim_jpeg_size, zeros_idat
from services.messages.base import ID_MAX_CHARS, INT64_MAX
from services.messages.frames import CONTENT_TYPES, HEADER_FIELDS, OPTIONAL_HEADERS
from services.simulator import convert

if TYPE_CHECKING:
    from services.bench.fuzz import FuzzBase, FuzzSpec

Headers = list[tuple[str, bytes]]
T = TypeVar("T")
VALID_KINDS = ("valid_jpeg", "valid_png", "valid_extra_headers")
VALID_WEIGHTS = (8.0, 1.0, 1.0)
START_NS = 1_750_000_000_000_000_000  # capture stamp of frame 0 [ns since the Unix epoch]
PERIOD_NS = 50_000_000  # between frames [ns]
_VEHICLES = 4  # frames come from this many vehicles, one camera each
_JPEG_EOI = b"\xff\xd9"
_SCAN_TAIL_CUT = 64  # bytes of entropy data a cut-and-closed JPEG loses at least


class FrameMaker:
    """Builds one frame of each kind from the seeded random source (one per fuzz run)."""

    def __init__(self, base: FuzzBase, spec: FuzzSpec) -> None:
        self.base, self.spec = base, spec
        self.rng = random.Random(spec.seed)
        self.idat = zeros_idat()
        self.index = 0
        self.size = (base.camera.width, base.camera.height)

    # --- material
    def headers(self, content_type: str = "image/jpeg") -> Headers:
        """The headers the simulator writes for this frame (seq = the frame's index)."""
        cam = self.base.camera
        meta = convert.frame_meta(cam, vehicle_id=f"fuzz-{self.index % _VEHICLES}", seq=self.index,
                                  stamp_ns=START_NS + self.index * PERIOD_NS,
                                  run_id=self.spec.run_id, content_type=content_type)
        return meta.to_headers()

    def key(self) -> bytes:
        return f"fuzz-{self.index % _VEHICLES}/{self.base.camera.camera_id}".encode()

    def jpeg(self) -> bytes:
        return self.rng.choice(self.base.jpegs)

    def png(self) -> bytes:
        return self.rng.choice(self.base.pngs)

    def small_png(self) -> bytes:
        return self.rng.choice(self.base.small_pngs)

    def pick(self, *options: T) -> T:
        return self.rng.choice(options)

    def bomb_side(self, limit: int) -> tuple[int, int]:
        """A width and height [px], each at most ``limit``, of more than max_pixels pixels."""
        pixels = self.spec.max_pixels
        w = self.rng.randint(pixels // limit + 1, limit)
        return w, self.rng.randint(pixels // w + 1, limit)

    def other_size(self, than: tuple[int, int] | None = None) -> tuple[int, int]:
        """A size [px] other than ``than`` (default: the camera's), within the pixel limit."""
        while True:
            w, h = self.rng.randint(1, 4096), self.rng.randint(1, 4096)
            if (w, h) != (than or self.size) and w * h <= self.spec.max_pixels:
                return w, h


def _set(headers: Headers, name: str, value: bytes) -> Headers:
    """``headers`` with ``name`` set to ``value`` (added when absent, as an empty traceparent is)."""
    if all(k != name for k, _ in headers):
        return [*headers, (name, value)]
    return [(k, value if k == name else v) for k, v in headers]


def _header_error(name: str, detail: str = ":") -> str:
    return re.escape(f"camera frame header {name!r}") + detail


_Case = tuple[bytes | None, Headers, str]  # value, headers, error pattern
_ABSURD_INTS = ("-1", str(INT64_MAX + 1), str(10**30), "9" * 5000, "abc", "", "1.5", "NaN",
                "1e3", "0x10", "\u0663", "-0.5")


def _random_bytes(m: FrameMaker) -> _Case:
    data = bytearray(m.rng.randbytes(m.rng.randint(1, 4096)))
    while data.startswith((JPEG_SOI[:1], PNG_SIGNATURE[:1])):
        data[0] = m.rng.randrange(256)
    ctype = m.pick(*CONTENT_TYPES)
    return bytes(data), m.headers(ctype), _not_a(ctype)


def _not_a(content_type: str) -> str:
    return re.escape("not a JPEG (no start-of-image marker)" if content_type == "image/jpeg"
                     else "not a PNG (bad signature)")


def _empty_value(m: FrameMaker) -> _Case:
    ctype = m.pick(*CONTENT_TYPES)
    return b"", m.headers(ctype), _not_a(ctype)


def _null_value(m: FrameMaker) -> _Case:
    ctype = m.pick(*CONTENT_TYPES)
    return None, m.headers(ctype), _not_a(ctype)  # a tombstone reaches the service as b""


def _truncated_jpeg(m: FrameMaker) -> _Case:
    data = m.jpeg()
    while True:  # a cut that happens to end on an end-of-image marker is not truncated
        cut = data[:m.rng.randint(len(JPEG_SOI), len(data) - 1)]
        if not cut.rstrip(b"\0").endswith(_JPEG_EOI):
            return cut, m.headers(), re.escape("truncated JPEG (no end-of-image marker)")


def _cut_and_closed_jpeg(m: FrameMaker) -> _Case:
    """A JPEG whose entropy data is cut short, then closed with an end-of-image marker.

    Every marker check passes; libjpeg only warns that the data ended early, and a lenient
    decoder serves the picture with its missing part grey. The cut keeps at least one byte of
    the scan and drops at least ``_SCAN_TAIL_CUT`` bytes of it.
    """
    data = m.jpeg()
    sos = data.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    end = data.rindex(_JPEG_EOI)
    cut = data[:m.rng.randint(scan + 1, end - _SCAN_TAIL_CUT)]
    return (cut + _JPEG_EOI, m.headers(),
            re.escape("corrupt image/jpeg image (decoder raised ValueError: Corrupt JPEG data: "))


def _truncated_png(m: FrameMaker) -> _Case:
    data = m.small_png()
    cut = data[:m.rng.randint(len(PNG_SIGNATURE), len(data) - 1)]
    return cut, m.headers("image/png"), re.escape("truncated PNG (no IEND chunk)")


def _bomb_error(w: int, h: int, max_pixels: int) -> str:
    return re.escape(f"image is {w}x{h} ({w * h} pixels): exceeds {max_pixels} pixels")


def _png_bomb(m: FrameMaker) -> _Case:
    w, h = m.bomb_side(100_000)
    return bomb_png(w, h, idat=m.idat), m.headers("image/png"), _bomb_error(w, h, m.spec.max_pixels)


def _jpeg_bomb(m: FrameMaker) -> _Case:
    w, h = m.bomb_side(65535)
    return claim_jpeg_size(m.jpeg(), w, h), m.headers(), _bomb_error(w, h, m.spec.max_pixels)


def _announced_bomb(m: FrameMaker) -> _Case:
    """Headers and image agree on a size above the limit: refused from the headers alone."""
    w, h = m.bomb_side(65535)
    headers = _set(_set(m.headers("image/png"), "width", str(w).encode()), "height", str(h).encode())
    return bomb_png(w, h, idat=m.idat), headers, re.escape(f"{w}x{h} exceeds {m.spec.max_pixels} pixels")


def _lying_image_size(m: FrameMaker) -> _Case:
    """The image's own header claims another size than the frame headers (and its data)."""
    w, h = m.other_size()
    if m.rng.random() < 0.5:
        value, ctype = claim_jpeg_size(m.jpeg(), w, h), "image/jpeg"
    else:
        value, ctype = bomb_png(w, h, idat=m.idat), "image/png"
    cw, ch = m.size
    return value, m.headers(ctype), re.escape(f"image is {w}x{h} but the headers say {cw}x{ch}")


def _lying_header_size(m: FrameMaker) -> _Case:
    """The frame headers claim another size than the (valid) image's own."""
    if m.rng.random() < 0.2:
        value, ctype, (iw, ih) = m.small_png(), "image/png", m.base.small_size
    else:
        value, ctype, (iw, ih) = m.jpeg(), "image/jpeg", m.size
    w, h = m.other_size((iw, ih))
    headers = _set(_set(m.headers(ctype), "width", str(w).encode()), "height", str(h).encode())
    return value, headers, re.escape(f"image is {iw}x{ih} but the headers say {w}x{h}")


def _wrong_content_type(m: FrameMaker) -> _Case:
    if m.rng.random() < 0.5:
        return m.small_png(), m.headers("image/jpeg"), _not_a("image/jpeg")
    return m.jpeg(), m.headers("image/png"), _not_a("image/png")


def _unknown_content_type(m: FrameMaker) -> _Case:
    ctype = m.pick("image/gif", "image/webp", "text/plain", "", "IMAGE/JPEG", "image/jpeg; q=1")
    return m.jpeg(), m.headers(ctype), _header_error("content-type", re.escape(f": {ctype!r} is not one of"))


def _oversize(m: FrameMaker) -> _Case:
    """A valid JPEG padded past the service's limit (but within the broker's)."""
    data = m.jpeg()
    size = m.spec.max_frame_bytes + m.rng.randint(1, m.spec.oversize_extra_bytes)
    return data + bytes(size - len(data)), m.headers(), re.escape(
        f"frame of {size} bytes exceeds the limit of {m.spec.max_frame_bytes}")


def _non_utf8_header(m: FrameMaker) -> _Case:
    name = m.pick(*HEADER_FIELDS)
    bad = m.pick(b"\xff\xfe", b"\xc3\x28", b"\x80", b"12\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")
    headers = _set(m.headers(), name, bad)
    return m.jpeg(), headers, _header_error(name, " is not UTF-8")


def _missing_header(m: FrameMaker) -> _Case:
    name = m.pick(*(h for h in HEADER_FIELDS if h not in OPTIONAL_HEADERS))
    return m.jpeg(), [(k, v) for k, v in m.headers() if k != name], _header_error(name, " is missing")


def _no_headers(m: FrameMaker) -> _Case:
    return m.jpeg(), [], _header_error(next(iter(HEADER_FIELDS)), " is missing")


def _absurd_int(name: str) -> Callable[[FrameMaker], _Case]:
    def make(m: FrameMaker) -> _Case:
        return m.jpeg(), _set(m.headers(), name, m.pick(*_ABSURD_INTS).encode()), _header_error(name)
    return make


def _absurd_size_header(m: FrameMaker) -> _Case:
    name = m.pick("width", "height")
    value = m.pick("0", "-640", "65536", str(10**30), "abc", "", "360.5")
    return m.jpeg(), _set(m.headers(), name, value.encode()), _header_error(name)


_BAD_CALIBRATION: dict[str, tuple[str, ...]] = {  # JSON values out of each field's bounds
    "fx": ("Infinity", "-Infinity", "NaN", "-1", "0", "1e999", '"abc"', "null"),
    "cx": ("Infinity", "NaN", "-1e999", '"abc"', "null", "[]"),
    "width": ("0", "-1", "1e30", "65536", "1.5", '"abc"', "null", "Infinity"),
    "pitch_rad": ("1.6", "-4", "NaN", "Infinity", '"abc"'),
    "yaw_rad": ("3.2", "-4", "NaN", "-Infinity"),
}
_BAD_CALIBRATION |= {"fy": _BAD_CALIBRATION["fx"], "cy": _BAD_CALIBRATION["cx"],
                     "height": _BAD_CALIBRATION["width"], "roll_rad": _BAD_CALIBRATION["yaw_rad"]}


def _absurd_calibration(m: FrameMaker) -> _Case:
    """One calibration field out of bounds, or a header that is no calibration at all (not JSON,
    not an object, nested beyond any parser's depth, a number beyond any integer's digits)."""
    if m.rng.random() < 0.75:
        calib = json.loads(dict(m.headers())["calibration"])
        field = m.pick(*_BAD_CALIBRATION)
        value = m.pick(*_BAD_CALIBRATION[field])
        # json.dumps writes `"name": value` pairs; the one field's value is swapped as text,
        # since JSON itself cannot carry Infinity or NaN.
        text = json.dumps(calib).replace(f'"{field}": {json.dumps(calib[field])}',
                                         f'"{field}": {value}')
        detail = re.escape(f" ({field}):")
    else:
        text = m.pick("{fx:", "[1, 2]", "null", "", "[" * 100_000 + "]" * 100_000,
                      '{"fx": 1' + "0" * 5000 + "}")
        detail = ""
    return m.jpeg(), _set(m.headers(), "calibration", text.encode()), _header_error("calibration", detail)


def _overlong_id(m: FrameMaker) -> _Case:
    name = m.pick("vehicle-id", "camera-id", "run-id", "traceparent")
    text = "x" * m.rng.randint(ID_MAX_CHARS + 1, 20_000)
    return m.jpeg(), _set(m.headers(), name, text.encode()), _header_error(name)


def _empty_id(m: FrameMaker) -> _Case:
    name = m.pick("vehicle-id", "camera-id")
    return m.jpeg(), _set(m.headers(), name, b""), _header_error(name)


def _bad_schema_version(m: FrameMaker) -> _Case:
    value = m.pick("0", "-1", str(10**30), "v1", "")
    return m.jpeg(), _set(m.headers(), "schema-version", value.encode()), _header_error("schema-version")


#: Every kind of bad frame and its builder: value, headers and the error pattern.
BAD_KINDS: dict[str, Callable[[FrameMaker], _Case]] = {
    "random_bytes": _random_bytes, "empty_value": _empty_value, "null_value": _null_value,
    "truncated_jpeg": _truncated_jpeg, "cut_and_closed_jpeg": _cut_and_closed_jpeg,
    "truncated_png": _truncated_png, "png_bomb": _png_bomb,
    "jpeg_bomb": _jpeg_bomb, "announced_bomb": _announced_bomb,
    "lying_image_size": _lying_image_size, "lying_header_size": _lying_header_size,
    "wrong_content_type": _wrong_content_type, "unknown_content_type": _unknown_content_type,
    "oversize": _oversize, "non_utf8_header": _non_utf8_header, "missing_header": _missing_header,
    "no_headers": _no_headers, "absurd_seq": _absurd_int("seq"),
    "absurd_stamp": _absurd_int("capture-ns"), "absurd_size_header": _absurd_size_header,
    "absurd_calibration": _absurd_calibration, "overlong_id": _overlong_id, "empty_id": _empty_id,
    "bad_schema_version": _bad_schema_version,
}
# Oversize frames are large: a few suffice to prove the path, many would only fill the broker.
BAD_WEIGHTS = tuple(0.1 if kind == "oversize" else 1.0 for kind in BAD_KINDS)


def hostile_key(m: FrameMaker) -> bytes | None:
    """The record key of a bad frame: usually its camera's, sometimes hostile too."""
    roll = m.rng.random()
    if roll < 0.7:
        return m.key()
    return m.rng.choice((None, b"", b"\xff\xfe/\x80", b"k" * 300, b"/" * 10))


def valid_frame(m: FrameMaker, kind: str) -> tuple[bytes, Headers]:
    """The value and headers of a valid frame of ``kind`` (one of `VALID_KINDS`)."""
    if kind == "valid_png":
        return m.png(), m.headers("image/png")
    headers = m.headers()
    if kind == "valid_extra_headers":  # headers outside the contract are ignored, whatever they hold
        headers += [(f"x-fuzz-{i}", m.rng.randbytes(m.rng.randint(0, 64))) for i in range(3)]
    return m.jpeg(), headers


