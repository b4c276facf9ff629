"""`roadstream docs` is reproducible and its AsyncAPI document covers every topic.

That the committed docs/ match its output byte for byte: tests/unit/messages.
"""

from __future__ import annotations

import json
from pathlib import Path

from services.cli.main import main
from services.docs import asyncapi, render_docs
from services.messages import ALL_TOPICS


def test_docs_command_is_reproducible(tmp_path: Path) -> None:
    assert main(["docs", "--out", str(tmp_path / "a")]) == 0
    assert main(["docs", "--out", str(tmp_path / "b")]) == 0
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.json"))
    assert a == b
    assert a
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_asyncapi_lists_every_topic_and_schema_refs_resolve() -> None:
    doc = asyncapi()
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.name for t in ALL_TOPICS}
    files = render_docs()
    for message in doc["components"]["messages"].values():
        for part in ("payload", "headers"):
            ref = message.get(part, {}).get("$ref")
            if ref:
                assert ref in files
                assert json.loads(files[ref])["title"]
