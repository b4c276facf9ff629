"""Configuration from one place: `ROADSTREAM_*` environment variables or a YAML/TOML/.env file.

Every service reads `Settings`; nothing else reads the environment. An invalid value raises
`SettingsError` with one line naming the setting and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from services.control.signing import parse_keyring

ENV_PREFIX = "ROADSTREAM_"


class SettingsError(ValueError):
    """A setting with an invalid value; the message is one line for the user."""


class Settings(BaseSettings):
    """Settings shared by every roadstream process.

    An empty `bootstrap_servers` means: start the embedded broker. Security settings apply
    to an external cluster (the embedded broker is plaintext on loopback only).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, case_sensitive=False
    )

    # --- Kafka connection
    bootstrap_servers: str = Field(
        default="", description="Comma-separated host:port list; empty starts the embedded broker."
    )
    client_id: str = Field(default="roadstream", min_length=1, description="Kafka client id prefix.")
    group_prefix: str = Field(default="roadstream", min_length=1, description="Consumer group prefix.")
    connect_timeout_s: float = Field(default=15.0, gt=0, le=600,
                                     description="Give up reaching the brokers after this [s].")
    # --- security (external clusters)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM) to verify brokers.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM), mTLS.")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM), mTLS.")
    # --- topics
    topic_partitions: int = Field(default=3, ge=1, le=1024, description="Partitions per topic.")
    topic_replication: int = Field(default=1, ge=1, le=16, description="Replication factor.")
    topic_min_insync_replicas: int | None = Field(
        default=None, ge=1, le=16,
        description="min.insync.replicas of the topics roadstream creates (with acks=all, a "
                    "write needs this many replicas); None = the cluster's default.")
    max_message_bytes: int = Field(default=8 << 20, ge=1 << 20, le=64 << 20,
                                   description="Largest message produced or fetched [bytes].")
    fetch_wait_ms: int = Field(
        default=5, ge=0, le=10_000,
        description="Longest a fetch of a control-path consumer (perception, planning, the "
                    "simulator) waits for data [ms]; small keeps frame-to-control latency low.")
    watch_fetch_wait_ms: int = Field(
        default=100, ge=0, le=10_000,
        description="Longest a fetch of a consumer off the control path (monitor, audit, "
                    "recorder) waits for data [ms]; larger means fewer empty fetches for the "
                    "broker to answer.")
    # --- compute
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto = CUDA when present, else CPU."
    )
    torch_threads: int = Field(default=0, ge=0, le=256, description="0 = torch default.")
    opencv_threads: int = Field(default=1, ge=0, le=256, description="OpenCV worker threads.")
    # --- service frame
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics, /healthz.")
    metrics_port: int = Field(default=0, ge=0, le=65535,
                              description="Port of /metrics and /healthz; 0 = a free port.")
    runs_dir: Path = Field(default=Path("runs"), description="Where run outputs are written.")
    model_registry_dir: Path = Field(
        default=Path("registry"), description="The model registry's folder (its index.json; "
        "`roadstream models`, docs/models.md).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # --- health and retries
    health_broker_timeout_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="/healthz says not ready when the broker has not answered for this long [s].")
    health_stall_s: float = Field(
        default=30.0, gt=0, le=86_400,
        description="/healthz says not ready when a partition's committed offset has not moved "
                    "for this long while records wait behind it (a stuck consumer) [s].")
    retry_backoff_max_s: float = Field(
        default=5.0, ge=0.1, le=300,
        description="Longest wait before a record is retried after a Kafka connection failure; "
                    "the wait starts at 0.1 s and doubles per failure [s].")
    dead_letter_window_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="Dead-letter safety events are aggregated: one per source topic, error "
                    "class and window of this length, with a count [s].")
    # --- signed safety events (docs/audit.md, "Signed events")
    events_keys: SecretStr | None = Field(
        default=None,
        description="JSON keyring {key_id: key} of safety.events, each key the standard base64 "
                    "of at least 32 random bytes: every service signs the events it publishes "
                    "with events_key_id, and the audit service accepts only events signed with "
                    "a key of it. None: events go out unsigned and the audit verifies none.")
    events_key_id: str | None = Field(
        default=None, description="Id of the key services sign events with; default: the only "
                                  "key of events_keys.")
    # --- tracing (W3C trace context always travels in the headers; export is optional)
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector base URL (e.g. http://localhost:4318); "
                                  "spans go to <endpoint>/v1/traces. None = no export.")
    otlp_headers: SecretStr | None = Field(
        default=None, description="Headers of each export request: key=value[,key=value...] "
                                  "(values URL-encoded), e.g. an authorization token.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for server in _split(value):
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _check_otlp_endpoint(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None  # an empty variable switches export off, like an unset one
            parts = urlsplit(value)
            try:
                port_ok = parts.port is None or 0 < parts.port < 65536
            except ValueError:
                port_ok = False
            if parts.scheme not in {"http", "https"} or not parts.hostname or not port_ok:
                raise ValueError("not an http(s) URL such as http://localhost:4318")
        return value

    @field_validator("events_keys")
    @classmethod
    def _check_events_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keyring(value.get_secret_value())
        return value

    @field_validator("otlp_headers")
    @classmethod
    def _check_otlp_headers(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_otlp_headers(value.get_secret_value())
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Self:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_username and sasl_password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        if self.events_key_id is not None and self.events_keys is None:
            raise ValueError("ROADSTREAM_EVENTS_KEY_ID needs ROADSTREAM_EVENTS_KEYS, the keyring "
                             "it names a key of")
        self.events_keyring()  # the signing key must be in the keyring
        min_isr = self.topic_min_insync_replicas
        if min_isr is not None and min_isr > self.topic_replication:
            raise ValueError(f"topic_min_insync_replicas={min_isr} exceeds topic_replication="
                             f"{self.topic_replication}: no write could ever be acknowledged")
        return self

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list (empty: embedded broker)."""
        return _split(self.bootstrap_servers)

    @property
    def embedded(self) -> bool:
        """True when roadstream must start its own broker."""
        return not self.servers

    def events_keyring(self) -> tuple[dict[str, bytes], str] | None:
        """(keyring, signing key id) of safety.events, or None when no events key is set.

        ValueError when the keyring is not valid or the key id not in it.
        """
        if self.events_keys is None:
            return None
        ring = parse_keyring(self.events_keys.get_secret_value())
        key_id = self.events_key_id
        if key_id is None:
            if len(ring) != 1:
                raise ValueError("ROADSTREAM_EVENTS_KEY_ID must name the signing key of an "
                                 "events keyring with several keys")
            key_id = next(iter(ring))
        if key_id not in ring:
            raise ValueError(f"ROADSTREAM_EVENTS_KEY_ID {key_id!r} is not in the events keyring "
                             f"({', '.join(sorted(ring))})")
        return ring, key_id

    @property
    def otlp_header_map(self) -> dict[str, str]:
        """The OTLP export request headers as a mapping (empty when none are set)."""
        return parse_otlp_headers(self.otlp_headers.get_secret_value()) if self.otlp_headers else {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values win, then the environment, then the optional file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _CONFIG_FILE is not None:
            sources.append(_file_source(settings_cls, _CONFIG_FILE))
        return tuple(sources)


_CONFIG_FILE: Path | None = None
#: Never echoed in an error: they may hold credentials.
_SECRET_FIELDS = frozenset({"sasl_password", "otlp_headers", "events_keys"})


def parse_otlp_headers(text: str) -> dict[str, str]:
    """`key=value[,key=value...]` (the OTEL_EXPORTER_OTLP_HEADERS format) → a mapping.

    Values are URL-decoded. Raises ValueError naming the bad item's position, not its text
    (it may be a token).
    """
    headers: dict[str, str] = {}
    for i, item in enumerate(text.split(",")):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise ValueError(f"item {i + 1} is not key=value")
        headers[name.lower()] = unquote(value.strip())
    return headers


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    suffix = path.suffix.lower()
    if suffix in {".yaml", ".yml"}:
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    return DotEnvSettingsSource(settings_cls, env_file=path, env_prefix=ENV_PREFIX)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from overrides, `ROADSTREAM_*` variables and an optional file.

    Raises SettingsError with one line such as
    `invalid setting ROADSTREAM_TOPIC_PARTITIONS='0': must be >= 1`.
    """
    global _CONFIG_FILE
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"settings file {str(config_file)!r} does not exist")
    _CONFIG_FILE = config_file
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(invalid_setting_line(exc)) from None
    finally:
        _CONFIG_FILE = None


def invalid_setting_line(exc: ValidationError, prefix: str = ENV_PREFIX,
                         secret_fields: frozenset[str] = _SECRET_FIELDS) -> str:
    """One line naming each invalid variable (``prefix`` + field) and why; secrets not shown.

    Every settings class (shared and per service) reports its errors through this.
    """
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            name = prefix + loc[0].upper()
            value = err.get("input")
            secret = loc[0] in secret_fields
            shown = f"={value!r}" if isinstance(value, str | int | float) and not secret else ""
            parts.append(f"{name}{shown}: {msg}")
        else:
            parts.append(msg)
    return "invalid setting " + "; ".join(parts)
