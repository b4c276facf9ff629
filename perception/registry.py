"""The model registry: which detector versions exist, which one serves, and how they got there.

A registry is a folder holding one index file, ``index.json``::

    format: "roadstream.model-registry"   format_version: 1
    production_log: [version, ...]   versions in the order they were made production; the last
                                     is the one serving, ``rollback`` steps back along it
    models: {version: entry}

and each entry::

    version      the artifact's own model_version (what every perception.objects names)
    stage        "candidate" | "production" | "archived"   (at most one production)
    kind         "checkpoint" (a .pt file) | "package" (a folder, ``perception.packages``)
    path         the checkpoint file or package folder, relative to the registry's folder
                 (an absolute path, as older indexes hold, is read as it is)
    sha256       ``artifact_sha256(path)`` when registered: a checkpoint file's bytes, a package's
                 manifest.json (which pins its model file's sha256, so it covers both)
    metrics      the package manifest's ``evaluation``, or a checkpoint's validation metrics and
                 operating point (``{}`` when it has none)
    model_card   the model card (Markdown), relative like ``path``, or null
    created_utc, promoted_utc   ISO 8601 UTC instants (promoted: last made production, or null)
    history      [{at_utc, stage, from, reason}, ...]: every stage change, oldest first (a
                 promotion below the floors made anyway also holds ``override``: its reason
                 and the floors missed); a shadow report recorded is noted without a change
    shadow       (optional) the last shadow comparison recorded (``record_shadow``): frames,
                 matched boxes, recall, precision, agreement with the production named in it

The registry records where an artifact is; it never copies it, so a path must stay valid (and
be reachable from the perception services it is deployed to). Paths are kept relative to the
registry's folder, so a registry moved or cloned together with its artifacts stays valid, and
an index names no folder of the machine it was made on; every entry the methods return holds
them absolute. Every write replaces the index
whole (a temporary file, then ``os.replace``) under an exclusive lock on ``index.lock``: a
reader sees the old index or the new one, never half of one, and two writers never lose each
other's change. Every error is a ``RegistryError`` naming the input.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from perception.checkpoint import load_checkpoint
from perception.classes import ModelLoadError
from perception.packages import MANIFEST, file_sha256, is_package, read_manifest

REGISTRY_FORMAT: Final = "roadstream.model-registry"
REGISTRY_VERSION: Final = 1
INDEX: Final = "index.json"
LOCK: Final = "index.lock"
MODEL_CARD: Final = "MODEL_CARD.md"  # looked for in a package folder or beside a checkpoint

Stage = Literal["candidate", "production", "archived"]
STAGES: Final[tuple[str, ...]] = get_args(Stage)
Clock = Callable[[], dt.datetime]


class RegistryError(ValueError):
    """A registry, an artifact or a request that cannot be served; the message names the input."""


def utc_now() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def artifact_sha256(path: str | Path) -> str:
    """The digest that names an artifact: a checkpoint file's sha256, or a package's manifest's.

    A package's manifest carries its model file's sha256 (checked by ``load_package``), its spec
    and class names, so its digest changes with any of them. Raises ``RegistryError`` for a path
    that is neither a file nor a package folder.
    """
    p = Path(path)
    if is_package(p):
        if not (p / MANIFEST).is_file():
            raise RegistryError(f"{p} is a folder without {MANIFEST}: not a model package")
        return file_sha256(p / MANIFEST)
    if not p.is_file():
        raise RegistryError(f"{p} does not exist: give a checkpoint file or a package folder")
    return file_sha256(p)


@dataclass(frozen=True)
class Artifact:
    """What registering learns from an artifact (``inspect_artifact``)."""

    version: str
    kind: Literal["checkpoint", "package"]
    path: Path
    sha256: str
    metrics: dict[str, Any]
    model_card: Path | None


def inspect_artifact(path: str | Path, *, model_card: str | Path | None = None) -> Artifact:
    """Read a checkpoint or package enough to register it (its weights are never run).

    A package's model file must match its manifest's sha256. ``model_card``: the card's path;
    default ``MODEL_CARD.md`` in the package folder or beside the checkpoint, if there is one.
    Raises ``RegistryError`` naming the path for anything that is not a valid artifact.
    """
    p = Path(path).resolve()
    try:
        if is_package(p):
            manifest = read_manifest(p)
            model_file = p / str(manifest.data["model"].get("file", ""))
            if not model_file.is_file():
                raise RegistryError(f"model package {p}: model file {model_file.name} is missing")
            if file_sha256(model_file) != manifest.data["model"].get("sha256"):
                raise RegistryError(f"model package {p}: {model_file.name} does not match the "
                                    "manifest's sha256 (changed after export)")
            kind: Literal["checkpoint", "package"] = "package"
            version = manifest.model_version
            evaluation = manifest.data.get("evaluation")
            metrics = dict(evaluation) if isinstance(evaluation, Mapping) else {}
            card_default = p / MODEL_CARD
        else:
            if not p.is_file():
                raise RegistryError(f"{p} does not exist: give a checkpoint file or a package "
                                    "folder")
            ckpt = load_checkpoint(p)
            kind, version = "checkpoint", ckpt.model_version
            metrics = {k: ckpt.metadata[k] for k in ("val", "operating_point")
                       if isinstance(ckpt.metadata.get(k), Mapping)}
            card_default = p.parent / MODEL_CARD
    except ModelLoadError as exc:
        raise RegistryError(str(exc)) from None
    if not version:
        raise RegistryError(f"{p} has an empty model_version")
    card: Path | None
    if model_card is not None:
        card = Path(model_card).resolve()
        if not card.is_file():
            raise RegistryError(f"model card {card} does not exist")
    else:
        card = card_default if card_default.is_file() else None
    return Artifact(version=version, kind=kind, path=p, sha256=artifact_sha256(p),
                    metrics=metrics, model_card=card)


class ModelRegistry:
    """The registry in folder ``root`` (created on the first write); see the module docstring.

    ``clock`` gives the instants recorded (injected by the tests). Reads need no lock; every
    change holds the folder's lock from reading the index to replacing it.
    """

    def __init__(self, root: str | Path, *, clock: Clock = utc_now) -> None:
        self.root = Path(root)
        self.index_path = self.root / INDEX
        self._clock = clock

    # --- reading
    def load(self) -> dict[str, Any]:
        """The index document (an empty one when the registry does not exist yet)."""
        if not self.index_path.exists():
            return {"format": REGISTRY_FORMAT, "format_version": REGISTRY_VERSION,
                    "production_log": [], "models": {}}
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"registry index {self.index_path} is not readable JSON "
                                f"({exc})") from None
        if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
            raise RegistryError(f"{self.index_path} is not a {REGISTRY_FORMAT} index")
        if data.get("format_version") != REGISTRY_VERSION:
            raise RegistryError(f"{self.index_path}: unsupported format_version "
                                f"{data.get('format_version')!r}")
        if not isinstance(data.get("models"), dict) or not isinstance(
                data.get("production_log"), list):
            raise RegistryError(f"{self.index_path} lacks its models or production_log")
        return data

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest registration first."""
        models = self.load()["models"].values()
        return [self._resolved(e) for e in sorted(models, key=lambda e: (e["created_utc"],
                                                                          e["version"]))]

    def get(self, version: str) -> dict[str, Any]:
        """The entry of ``version``; ``RegistryError`` naming it and the known ones if absent."""
        return self._resolved(self._entry(self.load(), version))

    def production(self) -> dict[str, Any] | None:
        """The production entry, or None when nothing was promoted."""
        return next((self._resolved(e) for e in self.load()["models"].values()
                     if e["stage"] == "production"), None)

    # --- changing
    def register(self, path: str | Path, *, stage: Stage = "candidate",
                 model_card: str | Path | None = None) -> dict[str, Any]:
        """Add the checkpoint or package at ``path`` (see ``inspect_artifact``) as ``stage``.

        ``stage`` ``production`` registers and promotes in one step. A version is registered
        once: a second artifact of the same version is refused (naming both paths).
        """
        if stage not in STAGES:
            raise RegistryError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
        artifact = inspect_artifact(path, model_card=model_card)
        with self._change() as index:
            known = index["models"].get(artifact.version)
            if known is not None:
                raise RegistryError(f"version {artifact.version} is already registered (from "
                                    f"{self._absolute(known['path'])}); {artifact.path} cannot "
                                    "take it again")
            now = _stamp(self._clock())
            entry: dict[str, Any] = {
                "version": artifact.version, "stage": "candidate", "kind": artifact.kind,
                "path": self._relative(artifact.path), "sha256": artifact.sha256,
                "metrics": artifact.metrics,
                "model_card": (self._relative(artifact.model_card) if artifact.model_card
                               else None),
                "created_utc": now, "promoted_utc": None,
                "history": [{"at_utc": now, "stage": "candidate", "from": None,
                             "reason": "registered"}]}
            index["models"][artifact.version] = entry
            if stage == "production":
                self._make_production(index, artifact.version, now, "registered as production")
            elif stage == "archived":
                self._move(entry, "archived", now, "registered as archived")
            return self._resolved(entry)

    def promote(self, version: str, *, override: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], str | None]:
        """Make ``version`` production: ``(its entry, the version archived, or None)``.

        The previous production is archived. Promoting the version already in production
        changes nothing, so a promotion can be repeated (e.g. to publish its deployment again).
        ``override``: a promotion made below the floors (``perception.promotion``) anyway: its
        reason and the floors missed, kept in the history record of the promotion.
        """
        with self._change() as index:
            entry = self._entry(index, version)
            if entry["stage"] == "production":
                return self._resolved(entry), None
            before = next((e["version"] for e in index["models"].values()
                           if e["stage"] == "production"), None)
            reason = "promoted" if override is None else (
                f"promoted with override: {override.get('reason', '')}")
            self._make_production(index, version, _stamp(self._clock()), reason)
            if override is not None:
                entry["history"][-1]["override"] = dict(override)
            return self._resolved(entry), before

    def record_shadow(self, version: str, report: Mapping[str, Any]) -> dict[str, Any]:
        """Keep ``report`` (a combined shadow comparison) as ``version``'s ``shadow``; the entry.

        It replaces the one recorded before; the history notes it without a stage change.
        """
        with self._change() as index:
            entry = self._entry(index, version)
            now = _stamp(self._clock())
            entry["shadow"] = {**report, "recorded_utc": now}
            entry["history"].append({
                "at_utc": now, "stage": entry["stage"], "from": entry["stage"],
                "reason": f"shadow report recorded: agreement {report.get('agreement')} over "
                          f"{report.get('frames')} frames"})
            return self._resolved(entry)

    def rollback(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restore the production before the current one: ``(restored, rolled back)``.

        The current production is archived (history reason ``rolled back``) and leaves the
        production log, so repeated rollbacks step further back. Raises ``RegistryError`` when
        there is no production or no earlier one to return to.
        """
        with self._change() as index:
            log: list[str] = index["production_log"]
            current = next((e for e in index["models"].values() if e["stage"] == "production"),
                           None)
            if current is None:
                raise RegistryError(f"registry {self.root} has no production model to roll back")
            while log and log[-1] == current["version"]:
                log.pop()
            previous = [v for v in log if v in index["models"]]
            if not previous:
                raise RegistryError(f"registry {self.root}: {current['version']} is the first "
                                    "production version; there is none earlier to roll back to")
            now = _stamp(self._clock())
            self._move(current, "archived", now, "rolled back")
            restored = index["models"][previous[-1]]
            self._move(restored, "production", now, f"restored by rollback of "
                       f"{current['version']}")
            restored["promoted_utc"] = now
            index["production_log"] = previous
            return self._resolved(restored), self._resolved(current)

    # --- internals
    def _relative(self, path: Path) -> str:
        """``path`` as the index keeps it: relative to the registry's folder."""
        return os.path.relpath(Path(path).resolve(), self.root.resolve())

    def _absolute(self, kept: str) -> str:
        """A path of the index as an absolute one (an absolute one stays as it is)."""
        return os.path.normpath(self.root.resolve() / kept)

    def _resolved(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``entry`` with its paths absolute."""
        out = dict(entry)
        out["path"] = self._absolute(entry["path"])
        if entry.get("model_card"):
            out["model_card"] = self._absolute(entry["model_card"])
        return out

    def _entry(self, index: Mapping[str, Any], version: str) -> dict[str, Any]:
        models: dict[str, dict[str, Any]] = index["models"]
        if version not in models:
            known = ", ".join(sorted(models)) or "none"
            raise RegistryError(f"version {version!r} is not in registry {self.root} "
                                f"(registered: {known})")
        return models[version]

    def _make_production(self, index: dict[str, Any], version: str, now: str,
                         reason: str) -> None:
        for other in index["models"].values():
            if other["stage"] == "production" and other["version"] != version:
                self._move(other, "archived", now, f"replaced by {version}")
        entry = index["models"][version]
        self._move(entry, "production", now, reason)
        entry["promoted_utc"] = now
        index["production_log"].append(version)

    @staticmethod
    def _move(entry: dict[str, Any], stage: str, now: str, reason: str) -> None:
        entry["history"].append({"at_utc": now, "stage": stage, "from": entry["stage"],
                                 "reason": reason})
        entry["stage"] = stage

    @contextlib.contextmanager
    def _change(self) -> Iterator[dict[str, Any]]:
        """The index to change, under the lock; written back atomically if the block succeeds."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"registry folder {self.root} cannot be created "
                                f"({exc.strerror})") from None
        with (self.root / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                index = self.load()
                yield index
                self._write(index)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, index: dict[str, Any]) -> None:
        text = json.dumps(index, indent=1, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{INDEX}.", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.index_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
