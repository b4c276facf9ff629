"""The layers import only downwards: common → simulators → perception → planning → evaluation →
services, and nothing below services/ talks to Kafka.

Every ``.py`` file of every layer is parsed with ``ast`` (imports inside functions and under
``TYPE_CHECKING`` count too). A layer may import itself, the layers before it, the standard
library and third-party packages. The one exception: evaluation may import the message
contract, ``services.messages``; so that this does not let Kafka in through the back door, the
contract (and ``services/__init__.py``, which importing it runs) is held to evaluation's rules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("common", "simulators", "perception", "planning", "evaluation", "services")
KAFKA_CLIENTS = frozenset({"faststream", "aiokafka", "kafka", "confluent_kafka"})
CONTRACT = "services.messages"  # the only module of services/ below services/ may import


@dataclass(frozen=True)
class Rule:
    """What one file may import: its own package, earlier layers, and extra module prefixes."""

    own: str
    lower: frozenset[str]
    extra: tuple[str, ...] = ()
    kafka: bool = False


def rule_for(path: Path, root: Path) -> Rule:
    """The rule of a file under ``root`` by its folder (and for the contract, its path)."""
    rel = path.relative_to(root)
    layer = rel.parts[0]
    lower = frozenset(LAYERS[:LAYERS.index(layer)])
    if layer == "evaluation":
        return Rule(layer, lower, extra=(CONTRACT,))
    if layer == "services":
        if rel.parts[1] == "messages" or rel == Path("services/__init__.py"):
            # Reached from evaluation: the contract keeps to evaluation's rules.
            below = frozenset(LAYERS[:LAYERS.index("evaluation")])
            return Rule(CONTRACT, below)
        return Rule(layer, lower, kafka=True)
    return Rule(layer, lower)


def module_of(path: Path, root: Path) -> str:
    """Dotted module name of a file (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in a file, relative imports resolved.

    ``from a import b`` yields ``a.b`` (``b`` may be a module); ``importlib.import_module`` and
    ``__import__`` with a constant name count as imports.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_of(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}".strip("."))
                      for alias in node.names]
        elif isinstance(node, ast.Call) and (
                getattr(node.func, "attr", None) == "import_module"
                or getattr(node.func, "id", None) == "__import__"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
    return found


def first_party(root: Path) -> frozenset[str]:
    """Top-level names of the project itself: its packages and root modules."""
    names = {p.parent.name for p in root.glob("*/__init__.py")}
    names |= {p.stem for p in root.glob("*.py")}
    return frozenset(names | set(LAYERS))


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Every import in the layers under ``root`` that breaks the order; one line each."""
    ours = first_party(root)
    bad: list[str] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            rule = rule_for(path, root)
            where = path.relative_to(root).as_posix()
            for line, name in imported(path, root):
                top = name.split(".")[0]
                if top in KAFKA_CLIENTS and not rule.kafka:
                    bad.append(f"{where}:{line} imports {name}: only services/ talks to Kafka")
                elif top in ours and not (
                        within(name, rule.own) or top in rule.lower
                        or any(within(name, extra) for extra in rule.extra)):
                    bad.append(f"{where}:{line} imports {name}: {rule.own} may import "
                               f"{', '.join(sorted(rule.lower | set(rule.extra))) or 'no project package'}")
    return bad


def test_every_layer_is_checked() -> None:
    present = [layer for layer in LAYERS if (ROOT / layer / "__init__.py").is_file()]
    assert {"common", "simulators", "perception", "planning", "services"} <= set(present)
    for layer in present:
        assert list((ROOT / layer).rglob("*.py")), layer
    assert imported(ROOT / "planning" / "types.py", ROOT), "the parser found no imports"


def test_the_layers_import_only_downwards() -> None:
    assert violations(ROOT) == []


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


CLEAN = {
    "common/__init__.py": "",
    "common/units.py": "import math\nimport numpy as np\n",
    "simulators/__init__.py": "from common import units\n",
    "perception/__init__.py": "",
    "perception/track.py": "from . import util\nfrom .util import helper\nimport torch\n",
    "perception/util.py": "from simulators import world\n",
    "planning/__init__.py": "from perception.track import Track\nfrom common.units import KPH\n",
    "evaluation/__init__.py": "from services.messages import VehicleState\nfrom services import messages\n",
    "services/__init__.py": "import os\n",
    "services/messages/__init__.py": "from common.units import KPH\nimport pydantic\n",
    "services/runtime.py": "import faststream\nfrom evaluation import score\nfrom planning import x\n",
    "tests/__init__.py": "",
}


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    write(tmp_path, CLEAN)
    assert violations(tmp_path) == []


@pytest.mark.parametrize(("rel", "text", "expected"), [
    ("common/units.py", "from simulators.world import World\n",
     "common/units.py:1 imports simulators.world.World: common may import no project package"),
    ("simulators/world.py", "import perception.track\n",
     "simulators/world.py:1 imports perception.track: simulators may import common"),
    ("perception/util.py", "def f():\n    from planning import x\n",
     "perception/util.py:2 imports planning.x: perception may import common, simulators"),
    ("planning/x.py", "from evaluation.score import s\n",
     "planning/x.py:1 imports evaluation.score.s"),
    ("planning/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import services\n",
     "planning/x.py:3 imports services"),
    ("perception/util.py", "import aiokafka\n",
     "perception/util.py:1 imports aiokafka: only services/ talks to Kafka"),
    ("common/units.py", "from faststream.kafka import KafkaBroker\n",
     "common/units.py:1 imports faststream.kafka.KafkaBroker: only services/ talks to Kafka"),
    ("evaluation/score.py", "from services.settings import Settings\n",
     "evaluation/score.py:1 imports services.settings.Settings"),
    ("evaluation/score.py", "from services import runtime\n",
     "evaluation/score.py:1 imports services.runtime"),
    ("evaluation/score.py", "import faststream\n",
     "evaluation/score.py:1 imports faststream: only services/ talks to Kafka"),
    ("services/messages/base.py", "import aiokafka\n",
     "services/messages/base.py:1 imports aiokafka: only services/ talks to Kafka"),
    ("services/messages/base.py", "from services.settings import Settings\n",
     "services/messages/base.py:1 imports services.settings.Settings"),
    ("services/messages/base.py", "from .. import settings\n",
     "services/messages/base.py:1 imports services.settings"),
    ("simulators/world.py", "import importlib\nm = importlib.import_module('planning.gate')\n",
     "simulators/world.py:2 imports planning.gate"),
    ("common/units.py", "from tests import helpers\n",
     "common/units.py:1 imports tests.helpers"),
])
def test_the_checker_catches_a_violation(tmp_path: Path, rel: str, text: str, expected: str) -> None:
    write(tmp_path, {**CLEAN, rel: text})
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found
