"""`roadstream models list | show | register | promote | rollback | shadow | shadow-report`.

The registry itself is pure code (``perception.registry``); these commands read and change it,
and print what they did. ``promote`` and ``rollback`` then publish the new production on
``model.deployments`` when a broker is configured (``ROADSTREAM_BOOTSTRAP_SERVERS``), and every
running perception service swaps to it; ``--no-publish`` changes the registry only. ``promote``
refuses a version below the promotion floors (services/cli/promotion.py) unless
``--override REASON``. ``shadow`` runs a version beside production; ``shadow-report`` records
its audited comparison into its entry. The
registry's folder is ``--registry DIR``, else ``ROADSTREAM_MODEL_REGISTRY_DIR`` (default
``registry/`` in the working directory). docs/models.md describes the stages.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from perception.promotion import below_floors
from perception.registry import STAGES, ModelRegistry, RegistryError
from perception.shadow import combine_reports
from services.broker.clients import wait_for_brokers
from services.broker.producers import open_producer
from services.cli.common import CommandError, emit, run_async, settings_from
from services.cli.promotion import load_floors, override_event, publish_override, shadow_reports
from services.messages import (
    MODEL_DEPLOYMENTS,
    SAFETY_EVENTS,
    DeploymentAction,
    ModelDeployment,
    SafetyEvent,
)
from services.perception.deploy import deployment_of
from services.runtime.events import MODEL_PROMOTION_OVERRIDE
from services.settings import Settings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `models` and its subcommands."""
    p = sub.add_parser(
        "models", help="the model registry: list, show, register, promote, rollback, shadow",
        description="Detector versions known to the registry (ROADSTREAM_MODEL_REGISTRY_DIR, "
                    "default registry/), their stage (candidate, production, archived), "
                    "sha256, metrics and model card. `promote` makes a version production and "
                    "archives the one before; `rollback` restores the previous production.")
    p.add_argument("--registry", type=Path, default=None, metavar="DIR",
                   help="registry folder (default: ROADSTREAM_MODEL_REGISTRY_DIR or registry/)")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    s = msub.add_parser("list", help="every registered version and its stage",
                        description="One line per version, oldest registration first.")
    s.add_argument("--json", action="store_true", help="print the entries as JSON")
    s.set_defaults(func=cmd_list)

    s = msub.add_parser("show", help="one version: path, sha256, metrics, card, history",
                        description="Everything the registry knows of VERSION.")
    s.add_argument("version", metavar="VERSION", help="a registered model version")
    s.add_argument("--card", action="store_true", help="also print the model card's text")
    s.add_argument("--json", action="store_true", help="print the entry as JSON")
    s.set_defaults(func=cmd_show)

    s = msub.add_parser(
        "register", help="add a checkpoint (.pt) or model package folder",
        description="Read PATH (a roadstream checkpoint, or a package folder written by "
                    "`roadstream export`), and record its model_version, sha256 and metrics. "
                    "The file is not copied: keep it where it is.")
    s.add_argument("path", type=Path, metavar="PATH", help="checkpoint file or package folder")
    s.add_argument("--stage", choices=STAGES, default="candidate",
                   help="stage to register it in (candidate); production also promotes it")
    s.add_argument("--card", type=Path, default=None, metavar="FILE",
                   help="model card (Markdown); default MODEL_CARD.md in the package folder or "
                        "beside the checkpoint, if present")
    s.add_argument("--json", action="store_true", help="print the new entry as JSON")
    s.set_defaults(func=cmd_register)

    s = msub.add_parser(
        "promote", help="make VERSION production (the previous production is archived)",
        description="Make VERSION the production model; the previous production is archived. "
                    "Promoting the current production again changes nothing in the registry. "
                    "A version below the promotion floors (ROADSTREAM_PROMOTION_MIN_MAP50, "
                    "_MIN_SHADOW_AGREEMENT, _MIN_SHADOW_FRAMES; docs/models.md) is refused "
                    "unless --override REASON, which is recorded in its history and raised as "
                    "a model_promotion_override event.")
    s.add_argument("version", metavar="VERSION", help="a registered model version")
    s.add_argument("--override", default=None, metavar="REASON",
                   help="promote even below the floors, for this reason (audited)")
    _publish_flag(s)
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=cmd_promote)

    s = msub.add_parser(
        "shadow", help="run VERSION beside production on the same frames (or --stop it)",
        description="Publish a `shadow` deployment: every running perception service loads "
                    "VERSION beside its production model, runs it on the frames production "
                    "served, publishes its results on perception.objects.shadow (planning "
                    "ignores them) and raises model_shadow_report events comparing the two. "
                    "--stop ends it. Needs ROADSTREAM_BOOTSTRAP_SERVERS.")
    s.add_argument("version", metavar="VERSION", help="a registered model version")
    s.add_argument("--stop", action="store_true", help="stop shadowing VERSION")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=cmd_shadow)

    s = msub.add_parser(
        "shadow-report", help="record VERSION's audited shadow reports into its entry",
        description="Read every audited model_shadow_report of VERSION (by its sha256) from "
                    "the audit trail, combine them (counts summed, ratios recomputed) and "
                    "record the result as the entry's `shadow`, which `promote` checks against "
                    "the shadow agreement floor. Only reports against the current production "
                    "count.")
    s.add_argument("version", metavar="VERSION", help="a registered model version")
    s.add_argument("--url", default=None, help="the audit database (default ROADSTREAM_AUDIT_URL "
                   "or sqlite:///runs/audit.db)")
    s.add_argument("--json", action="store_true", help="print the recorded report as JSON")
    s.set_defaults(func=cmd_shadow_report)

    s = msub.add_parser(
        "rollback", help="restore the previous production version",
        description="Archive the current production and restore the version that was "
                    "production before it; repeat to step further back.")
    _publish_flag(s)
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=cmd_rollback)


def _publish_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-publish", action="store_true",
                   help="change the registry only; do not publish the deployment on "
                        "model.deployments (published by default when "
                        "ROADSTREAM_BOOTSTRAP_SERVERS is set)")


async def publish_deployment(settings: Settings, deployment: ModelDeployment) -> None:
    """Send ``deployment`` on `model.deployments` and wait for the acknowledgement.

    Raises ``BrokerUnavailableError`` when the brokers do not answer within
    ``connect_timeout_s``, ``TimeoutError`` when the send is not acknowledged within it.
    """
    bootstrap = settings.bootstrap_servers
    await wait_for_brokers(settings, bootstrap)
    producer = await open_producer(settings, bootstrap, "models")
    try:
        await asyncio.wait_for(producer.send_and_wait(
            MODEL_DEPLOYMENTS.name, deployment.encode(), key=deployment.model_name.encode(),
            headers=[("content-type", b"application/json")]), timeout=settings.connect_timeout_s)
    finally:
        await producer.stop()


def _deploy(args: argparse.Namespace, entry: dict[str, Any], action: DeploymentAction) -> str:
    """Publish the deployment unless told not to; what happened, for the output."""
    if args.no_publish:
        return "not published (--no-publish)"
    settings = settings_from(args)
    if settings.embedded:
        return "not published (no ROADSTREAM_BOOTSTRAP_SERVERS)"
    try:
        run_async(publish_deployment(settings, deployment_of(entry, action)))
    except Exception as exc:  # any client failure: the registry changed, the services did not
        raise CommandError(
            f"{entry['version']} is production in the registry, but its deployment was not "
            f"published to {settings.bootstrap_servers} ({type(exc).__name__}: {exc}); run "
            f"`roadstream models promote {entry['version']}` again to publish it") from None
    return f"published on {MODEL_DEPLOYMENTS.name}"


def registry_of(args: argparse.Namespace) -> ModelRegistry:
    """The registry named by --registry, else by the settings."""
    root = args.registry if args.registry is not None else settings_from(args).model_registry_dir
    return ModelRegistry(root)


def _line(entry: dict[str, Any]) -> str:
    metrics = entry.get("metrics") or {}
    val = metrics.get("val") if isinstance(metrics.get("val"), dict) else metrics
    map50 = val.get("map50") if isinstance(val, dict) else None
    score = f"mAP50 {map50:.3f}" if isinstance(map50, int | float) else "no metrics"
    return (f"{entry['version']:<40} {entry['stage']:<10} {entry['kind']:<10} "
            f"{entry['sha256'][:12]}  {score}  {entry['created_utc']}")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every entry."""
    try:
        entries = registry_of(args).entries()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    text = "\n".join(_line(e) for e in entries) or "the registry is empty"
    emit({"models": entries}, as_json=args.json, text=text)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one entry (and its card)."""
    try:
        entry = registry_of(args).get(args.version)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    card_text = None
    if args.card:
        if entry.get("model_card") is None:
            raise CommandError(f"version {args.version} has no model card")
        try:
            card_text = Path(entry["model_card"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"model card {entry['model_card']} of {args.version}: "
                               f"{exc.strerror}") from None
    lines = [f"{k:<13} {entry.get(k)}" for k in
             ("version", "stage", "kind", "path", "sha256", "model_card", "created_utc",
              "promoted_utc")]
    lines.append("metrics       " + (", ".join(f"{k}={v}" for k, v in _flat(entry["metrics"]))
                                     or "none"))
    lines += ["history"] + [f"  {h['at_utc']}  {h['from'] or '-'} -> {h['stage']}  "
                            f"({h['reason']})" for h in entry["history"]]
    if card_text is not None:
        lines += ["", card_text]
    result = {**entry, "model_card_text": card_text} if args.card else entry
    emit(result, as_json=args.json, text="\n".join(lines))
    return 0


def _flat(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar metrics as dotted names (nested per-class tables left out of the text view)."""
    out: list[tuple[str, Any]] = []
    for k, v in metrics.items():
        if isinstance(v, dict) and not prefix:
            out += _flat(v, f"{k}.")
        elif isinstance(v, int | float | str) and not isinstance(v, bool):
            out.append((prefix + k, v))
    return out


def cmd_register(args: argparse.Namespace) -> int:
    """Register an artifact."""
    try:
        entry = registry_of(args).register(args.path, stage=args.stage, model_card=args.card)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    emit(entry, as_json=args.json,
         text=f"registered {entry['version']} as {entry['stage']} (sha256 {entry['sha256'][:12]})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a version to production, if it reaches the floors or is overridden."""
    registry = registry_of(args)
    try:
        candidate, production = registry.get(args.version), registry.production()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    failures = below_floors(candidate, load_floors(), production)
    override = None
    audited = "no override"
    if failures:
        if not args.override:
            raise CommandError(f"{args.version} is below the promotion floors: "
                               f"{'; '.join(failures)}; nothing changed (--override REASON to "
                               "promote anyway, audited)")
        override = {"reason": args.override, "below_floors": failures}
        audited = _audit_override(args, override_event(candidate, production, args.override,
                                                       failures))
    try:
        entry, archived = registry.promote(args.version, override=override)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    published = _deploy(args, entry, DeploymentAction.PROMOTE)
    text = f"{entry['version']} is production" + (f"; {archived} archived" if archived else "")
    if override is not None:
        text += f"; below the floors, overridden ({args.override}): {audited}"
    emit({"production": entry, "archived": archived, "deployment": published,
          "override": override, "override_event": audited if override else None},
         as_json=args.json, text=f"{text}; {published}")
    return 0


def _audit_override(args: argparse.Namespace, event: SafetyEvent) -> str:
    """Publish the override event before anything changes; what happened, for the output.

    With a broker configured (``--no-publish`` or not: that flag is about the deployment), a
    promotion whose override cannot be audited does not happen. Without one, the registry's
    history is its only record.
    """
    settings = settings_from(args)
    if settings.embedded:
        return ("recorded in the registry history only (no ROADSTREAM_BOOTSTRAP_SERVERS to "
                "publish the event on)")
    try:
        run_async(publish_override(settings, event))
    except Exception as exc:  # any client failure: refuse rather than promote unaudited
        raise CommandError(f"the override of {event.details['version']} could not be published "
                           f"to {SAFETY_EVENTS.name} on {settings.bootstrap_servers} "
                           f"({type(exc).__name__}: {exc}); nothing changed") from None
    return f"{MODEL_PROMOTION_OVERRIDE} event {event.event_id} published on {SAFETY_EVENTS.name}"


def cmd_shadow(args: argparse.Namespace) -> int:
    """Publish a shadow (or shadow_stop) deployment of a version."""
    try:
        entry = registry_of(args).get(args.version)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    settings = settings_from(args)
    if settings.embedded:
        raise CommandError(f"no ROADSTREAM_BOOTSTRAP_SERVERS: nowhere to publish the shadow "
                           f"deployment of {args.version}")
    action = DeploymentAction.SHADOW_STOP if args.stop else DeploymentAction.SHADOW
    try:
        run_async(publish_deployment(settings, deployment_of(entry, action)))
    except Exception as exc:  # any client failure
        raise CommandError(f"the {action.value} deployment of {args.version} was not published "
                           f"to {settings.bootstrap_servers} ({type(exc).__name__}: {exc})"
                           ) from None
    emit({"version": entry["version"], "action": action.value,
          "deployment": f"published on {MODEL_DEPLOYMENTS.name}"}, as_json=args.json,
         text=f"{action.value} of {entry['version']} published on {MODEL_DEPLOYMENTS.name}")
    return 0


def cmd_shadow_report(args: argparse.Namespace) -> int:
    """Combine a version's audited shadow reports against the production and record them."""
    registry = registry_of(args)
    try:
        entry, production = registry.get(args.version), registry.production()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    if production is None:
        raise CommandError(f"registry {registry.root} has no production: a shadow report "
                           f"compares {args.version} with one")
    reports = [r for r in shadow_reports(args.url, entry["version"], entry["sha256"])
               if (r.get("production") or {}).get("sha256") == production["sha256"]]
    if not reports:
        raise CommandError(f"the audit trail holds no model_shadow_report of {args.version} "
                           f"(sha256 {entry['sha256'][:12]}…) against the production "
                           f"{production['version']}")
    combined = {**combine_reports(reports),
                "production": {"version": production["version"], "sha256": production["sha256"]},
                "shadow": {"version": entry["version"], "sha256": entry["sha256"]}}
    try:
        registry.record_shadow(args.version, combined)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    emit(combined, as_json=args.json,
         text=f"{args.version} against {production['version']}: agreement "
              f"{combined['agreement']}, recall {combined['recall']}, precision "
              f"{combined['precision']} over {combined['frames']} frames "
              f"({combined['reports']} reports, {combined['frames_skipped']} frames skipped); "
              "recorded")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Restore the previous production version."""
    try:
        restored, rolled_back = registry_of(args).rollback()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    published = _deploy(args, restored, DeploymentAction.ROLLBACK)
    emit({"production": restored, "archived": rolled_back["version"], "deployment": published},
         as_json=args.json, text=f"rolled back {rolled_back['version']}: "
                                 f"{restored['version']} is production again; {published}")
    return 0
