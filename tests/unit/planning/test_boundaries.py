"""planning/ is pure: it never imports the Kafka side of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import planning

FORBIDDEN = ("services", "faststream", "aiokafka")


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_planning_imports_no_kafka_side_module() -> None:
    package_dir = Path(planning.__file__).parent
    files = sorted(package_dir.rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(package_dir)): sorted(imported_roots(f) & set(FORBIDDEN))
        for f in files
        if imported_roots(f) & set(FORBIDDEN)
    }
    assert offenders == {}
