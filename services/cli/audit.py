"""`roadstream audit verify / query / export`: read the safety audit trail.

These commands only read: they never create a database, a key or an anchor, nor change one.
The database is `--url`, else ROADSTREAM_AUDIT_URL, else sqlite:///runs/audit.db; verify also
needs the audit key and the anchor file (services/audit/trail.py says where they are).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from services.audit.chain import AuditRow
from services.audit.settings import load_audit_settings
from services.audit.store import AuditFilter, AuditStore, AuditStoreError, open_store
from services.audit.trail import open_trail
from services.cli.common import CommandError, emit
from services.messages import Severity

CSV_COLUMNS = ("seq", "event_id", "stamp_ns", "time_utc", "vehicle_id", "source", "type",
               "severity", "event_json", "prev_hash", "row_hash")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `audit` and its actions."""
    p = sub.add_parser(
        "audit", help="the safety audit trail (verify / query / export)",
        description="Read the keyed, anchored audit trail the audit service writes from "
                    "safety.events. Database: --url, else ROADSTREAM_AUDIT_URL, else "
                    "sqlite:///runs/audit.db. See docs/audit.md.")
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    verify = asub.add_parser(
        "verify", help="recompute the keyed chain and check it against the anchors",
        description="Recompute every row's MAC under the audit key, check every link, and "
                    "check the head against the anchor file. Exit 0 with `chain OK: N rows` "
                    "and the head, or exit 1 naming the first problem (gap, broken link, hash "
                    "mismatch, wrong key, anchor mismatch, truncated, bad anchor, no anchor, "
                    "unkeyed chain) and the first bad row.")
    _add_url(verify)
    verify.add_argument("--key-file", type=Path, default=None, metavar="FILE",
                        help="the audit key (default ROADSTREAM_AUDIT_KEY_FILE, else "
                             "<database>.key beside a SQLite database)")
    verify.add_argument("--anchor-file", type=Path, default=None, metavar="FILE",
                        help="the anchor file (default ROADSTREAM_AUDIT_ANCHOR_FILE, else "
                             "<database>.anchors beside a SQLite database)")
    verify.add_argument("--json", action="store_true", help="machine-readable result")
    verify.set_defaults(func=cmd_verify)

    query = asub.add_parser("query", help="list events matching filters",
                            description="List audited events, oldest first (--newest-first to "
                                        "reverse). Times: ISO-8601 (UTC when no offset) or "
                                        "integer ns since the Unix epoch; --since is "
                                        "inclusive, --until exclusive.")
    _add_url(query)
    _add_filters(query)
    query.add_argument("--limit", type=_non_negative, default=100,
                       help="at most this many rows (default 100; 0 = no limit)")
    query.add_argument("--newest-first", action="store_true", help="newest events first")
    query.add_argument("--json", action="store_true", help="rows as a JSON document")
    query.set_defaults(func=cmd_query)

    export = asub.add_parser("export", help="write rows as CSV or JSON Lines",
                             description="Export rows (all, or those matching the filters) "
                                         "with their hashes, oldest first. A full export "
                                         "can be re-verified without the database "
                                         "(docs/audit.md).")
    _add_url(export)
    _add_filters(export)
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl",
                        help="csv or jsonl (default jsonl)")
    export.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="write here instead of standard output")
    export.set_defaults(func=cmd_export)


def _add_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="sqlite:///PATH, a file path or postgresql://… "
                        "(default ROADSTREAM_AUDIT_URL or sqlite:///runs/audit.db)")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=parse_time, default=None, metavar="TIME",
                   help="events stamped at or after TIME (ISO-8601 or ns)")
    p.add_argument("--until", type=parse_time, default=None, metavar="TIME",
                   help="events stamped before TIME (ISO-8601 or ns)")
    p.add_argument("--type", default=None, help="event type, e.g. dead_letter")
    p.add_argument("--severity", choices=[s.value for s in Severity], default=None)
    p.add_argument("--vehicle", default=None, help="vehicle id")
    p.add_argument("--source", default=None, help="service that raised the event")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def parse_time(text: str) -> int:
    """ISO-8601 time (UTC when it has no offset) or integer ns → ns since the Unix epoch."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither ISO-8601 (2026-05-20T14:03:00Z) nor integer ns") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    # integer arithmetic: a float of ns since 1970 would lose the last digits
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def format_time(stamp_ns: int) -> str:
    """ns since the Unix epoch as ISO-8601 UTC with microseconds."""
    seconds, ns = divmod(stamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ns // 1000)
    return moment.isoformat().replace("+00:00", "Z")


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[AuditStore]:
    options = load_audit_settings(url=args.url)
    try:
        store = open_store(options.url, create=False, busy_timeout_s=options.busy_timeout_s)
    except AuditStoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield store
    except AuditStoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()


def _filter(args: argparse.Namespace) -> AuditFilter:
    return AuditFilter(since_ns=args.since, until_ns=args.until, type=args.type,
                       severity=args.severity, vehicle_id=args.vehicle, source=args.source)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the chain and its anchors: 0 when intact, 1 naming the first problem."""
    options = load_audit_settings(url=args.url, key_file=args.key_file,
                                  anchor_file=args.anchor_file)
    try:
        store = open_trail(options, create=False)
    except AuditStoreError as exc:
        raise CommandError(str(exc)) from None
    with store:
        try:
            result = store.verify()
        except (AuditStoreError, OSError) as exc:  # the database, or the anchor file, failed
            raise CommandError(str(exc)) from None
        url = store.url
    emit({**result.as_dict(), "url": url}, as_json=args.json, text=result.describe())
    return 0 if result.ok else 1


def cmd_query(args: argparse.Namespace) -> int:
    """Print matching rows as a table or JSON."""
    with _store(args) as store:
        rows = store.query(_filter(args), limit=args.limit or None,
                           newest_first=args.newest_first)
    if args.json:
        emit({"rows": [r.as_dict() for r in rows], "count": len(rows)}, as_json=True, text="")
        return 0
    lines = [format_row(r) for r in rows]
    more = " (limit reached: --limit N or --since/--until for more)" \
        if args.limit and len(rows) == args.limit else ""
    lines.append(f"{len(rows)} event(s){more}")
    emit({}, as_json=False, text="\n".join(lines))
    return 0


def format_row(row: AuditRow) -> str:
    """One line of `audit query` output."""
    details = json.dumps(row.event().get("details", {}), sort_keys=True, ensure_ascii=False)
    if len(details) > 80:
        details = details[:77] + "..."
    return (f"{row.seq:>7}  {format_time(row.stamp_ns)}  {row.severity:<8}  {row.type:<20}  "
            f"{row.vehicle_id or '-':<12}  {row.source:<16}  {row.event_id}  {details}")


def cmd_export(args: argparse.Namespace) -> int:
    """Write rows as CSV or JSON Lines to a file or standard output."""
    with _store(args) as store:
        if args.out is None:
            try:
                count = write_rows(store, _filter(args), args.format, sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:
                # the reader stopped early (`| head`): not an error; silence the final flush
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_name(args.out.name + ".tmp")
            with tmp.open("w", encoding="utf-8", newline="") as out:
                count = write_rows(store, _filter(args), args.format, out)
            tmp.replace(args.out)  # never a half-written export under the final name
    if args.out is not None:
        sys.stderr.write(f"exported {count} row(s) to {args.out}\n")
    return 0


def write_rows(store: AuditStore, where: AuditFilter, fmt: str, out: IO[str]) -> int:
    """Stream matching rows to `out` as csv or jsonl; return how many were written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in store.iter_rows(where):
            writer.writerow(_csv_values(row))
            count += 1
        return count
    for row in store.iter_rows(where):
        out.write(json.dumps(row.as_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def _csv_values(row: AuditRow) -> list[Any]:
    return [row.seq, row.event_id, row.stamp_ns, format_time(row.stamp_ns), row.vehicle_id,
            row.source, row.type, row.severity, row.event_json, row.prev_hash, row.row_hash]
