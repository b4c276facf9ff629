"""`freeze_heap`: what a service process holds once started is left out of later collections."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Run in a fresh interpreter: freezing the test runner's own heap would leak its garbage.
PROBE = """
import gc, weakref
import torch  # what a service process imports: most of what a full collection walks
from services.runtime.process import freeze_heap

class Node:
    pass

kept = [Node() for _ in range(10_000)]
before = len(gc.get_objects(generation=2))
frozen = freeze_heap()
after = len(gc.get_objects(generation=2))
assert frozen == gc.get_freeze_count(), (frozen, gc.get_freeze_count())
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
gc.collect()
print(before, frozen, after, gone() is None, len(kept))
"""


def test_freeze_heap_takes_the_started_heap_out_of_full_collections() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=300).stdout.split()
    before, frozen, after = (int(v) for v in out[:3])
    # What the oldest generation held (torch's import alone: about 100 000 objects) is frozen;
    # a full collection now walks next to nothing.
    assert before > 100_000
    assert frozen >= before
    assert after < 1_000
    # A cycle made after the freeze is still collected.
    assert out[3] == "True"
