"""simulators/ is pure: it never imports the Kafka side of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import simulators

FORBIDDEN = ("services", "faststream", "aiokafka")


def test_simulators_never_import_services_or_kafka() -> None:
    root = Path(simulators.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
