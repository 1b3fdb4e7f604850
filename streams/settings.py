"""One frozen settings object, built once in the entry point and passed down.

Every knob names its environment variable (prefix ``FORESIGHT_``); the broker address also
honours the conventional ``KAFKA_BOOTSTRAP_SERVERS`` so Foresight drops into an existing
Kafka deployment without new variables. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError

#: Where the embedded broker, its jars, simulator output and bench scratch live (git-ignored).
DEFAULT_HOME = Path(".foresight")


class Settings(BaseSettings):
    """Runtime configuration of every Foresight process.

    >>> s = Settings(bootstrap_servers="127.0.0.1:9092", partitions=8)
    >>> s.partitions, s.local_broker, s.brokers
    (8, False, '127.0.0.1:9092')
    """

    # populate_by_name: Settings(bootstrap_servers=...) works like the environment variables
    # (without it pydantic ignored the field name beside its aliases)
    model_config = SettingsConfigDict(env_prefix="FORESIGHT_", frozen=True, extra="ignore",
                                      populate_by_name=True)

    # --- Kafka -------------------------------------------------------------------------
    bootstrap_servers: str = Field(
        default="",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "FORESIGHT_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port]; empty means the embedded local broker "
        "(KAFKA_BOOTSTRAP_SERVERS or FORESIGHT_BOOTSTRAP_SERVERS)",
    )
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka client connects: SASL_SSL in production, SSL for "
        "client certificates only (FORESIGHT_SECURITY_PROTOCOL)",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism of SASL_* protocols (FORESIGHT_SASL_MECHANISM)"
    )
    sasl_username: str | None = Field(default=None, description="FORESIGHT_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(default=None, description="FORESIGHT_SASL_PASSWORD")
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates; default: the "
        "system's trusted CAs (FORESIGHT_SSL_CAFILE)",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (FORESIGHT_SSL_CERTFILE)"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of the client certificate (FORESIGHT_SSL_KEYFILE)"
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="password of an encrypted FORESIGHT_SSL_KEYFILE "
        "(FORESIGHT_SSL_KEY_PASSWORD)"
    )
    partitions: int = Field(
        default=4, ge=1, le=1024,
        description="partitions of every subscriber-keyed topic (FORESIGHT_PARTITIONS)",
    )
    replication_factor: int = Field(
        default=1, ge=1, le=7, description="FORESIGHT_REPLICATION_FACTOR"
    )
    topic_prefix: str = Field(
        default="", description="prefix for every topic name, e.g. 'prod.' (FORESIGHT_TOPIC_PREFIX)"
    )

    # --- embedded local broker ---------------------------------------------------------
    home: Path = Field(default=DEFAULT_HOME, description="FORESIGHT_HOME")
    local_port: int = Field(default=19092, description="FORESIGHT_LOCAL_PORT")
    local_controller_port: int = Field(default=19093, description="FORESIGHT_LOCAL_CONTROLLER_PORT")
    local_heap: str = Field(default="512m", description="FORESIGHT_LOCAL_HEAP")

    # --- worker ------------------------------------------------------------------------
    app_id: str = Field(default="foresight", description="consumer group / app id (FORESIGHT_APP_ID)")
    worker_id: str = Field(
        default="",
        description="stable id of this worker for its transactional producer; defaults to "
        "host-web_port (FORESIGHT_WORKER_ID)",
    )
    store: str = Field(
        default="memory://",
        description="state store: memory:// (tests) or rocksdb:// (production) (FORESIGHT_STORE)",
    )
    web_port: int = Field(default=6066, description="FORESIGHT_WEB_PORT")
    web_host: str = Field(default="127.0.0.1", description="FORESIGHT_WEB_HOST")
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token that web endpoints reading state (/table/, /router/) "
        "require; without it they answer 403. /metrics, /progress and /health stay open "
        "(FORESIGHT_API_TOKEN)",
    )
    log_level: str = Field(default="warning", description="FORESIGHT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one plain line per record (no colour codes); json: one JSON object "
        "per line with time (ISO 8601, UTC), level, logger, message, worker, component and "
        "exception, for log shippers. Every process logs so: the worker, its packer child "
        "and the other commands (FORESIGHT_LOG_FORMAT)",
    )

    # --- processing unit ---------------------------------------------------------------
    batch_max_events: int = Field(
        default=2000, ge=1, description="an envelope closes at this many events (FORESIGHT_BATCH_MAX_EVENTS)"
    )
    batch_max_bytes: int = Field(
        default=900_000, ge=1024, description="... or at this many bytes (FORESIGHT_BATCH_MAX_BYTES)"
    )
    batch_linger_ms: int = Field(
        default=20, ge=0, le=5000,
        description="... or when its oldest event is this old (FORESIGHT_BATCH_LINGER_MS)",
    )
    commit_interval_ms: int = Field(
        default=1, ge=1, le=60_000,
        description="state, outputs and progress are committed in one transaction as soon as "
        "work is pending, at least this long after the previous commit ended; larger values "
        "coalesce more writes per commit at the cost of latency (FORESIGHT_COMMIT_INTERVAL_MS)",
    )
    steps: str = Field(
        default="unified-view,call-features,audit,contact-policy",
        description="pipeline steps to run, comma separated (FORESIGHT_STEPS)",
    )
    foresee_catalog: Path | None = Field(
        default=None,
        description="Foresee feature/model catalog (FORESIGHT_FORESEE_CATALOG; default "
        "agents/rules/foresee.yaml)",
    )
    contact_policy: Path | None = Field(
        default=None,
        description="contact policy to load instead of the packaged one "
        "(FORESIGHT_CONTACT_POLICY); check it first with 'foresight policy check FILE'",
    )
    contact_shadow_policy: Path | None = Field(
        default=None,
        description="a second contact policy run in shadow (dry run): decided beside the live "
        "one, reported in each decision's 'shadow' field and counted in "
        "foresight_contact_shadow_disagreements_total (FORESIGHT_CONTACT_SHADOW_POLICY)",
    )
    audit_rules: Path | None = Field(
        default=None,
        description="audit rule catalog to load instead of the packaged one "
        "(FORESIGHT_AUDIT_RULES); check it first with 'foresight rules check FILE'",
    )
    audit_hint_ttl_s: int = Field(
        default=7 * 86_400, ge=60,
        description="an audit hint for agents (open finding) expires this long after it was "
        "written, unless its resolution replaces it first (FORESIGHT_AUDIT_HINT_TTL_S)",
    )
    audit_resolved_hint_ttl_s: int = Field(
        default=86_400, ge=60,
        description="a closed audit hint ('fixed at ...') expires this long after it was "
        "written: long enough for the customer's next call about it "
        "(FORESIGHT_AUDIT_RESOLVED_HINT_TTL_S)",
    )
    timer_lateness_ms: int = Field(
        default=2_000, ge=0,
        description="grace periods end this much event time after their deadline, so reports "
        "arriving up to that late are still judged in order (FORESIGHT_TIMER_LATENESS_MS)",
    )
    timer_idle_ms: int = Field(
        default=5_000, ge=100,
        description="after this much wall-clock silence a partition's event-time clock "
        "follows the wall clock, so deadlines pass without events (FORESIGHT_TIMER_IDLE_MS)",
    )
    timer_live_ms: int = Field(
        default=300_000, ge=0,
        description="an idle partition's clock follows the wall clock only if its last event "
        "was dated within this much of the wall clock (live traffic); replays and simulations "
        "far from the wall clock run on event time alone (FORESIGHT_TIMER_LIVE_MS)",
    )
    state_cache_keys: int = Field(
        default=20_000, ge=0,
        description="decoded states kept per table and partition after a commit, so active "
        "subscribers are not decoded again (FORESIGHT_STATE_CACHE_KEYS)",
    )
    max_event_bytes: int = Field(
        default=64 * 1024, ge=256, le=512 * 1024,
        description="larger input events go to dead-letters as oversize, with their first 4 KiB, "
        "size and SHA-256; the packer never carries them whole (FORESIGHT_MAX_EVENT_BYTES, at "
        "most 512 KiB so a dead letter's copy always fits in a Kafka message)",
    )
    event_time_max_future_s: int = Field(
        default=3600, ge=0,
        description="events dated further than this ahead of the worker's wall clock are dead "
        "letters (event_time_out_of_bounds) and never move a partition's clock "
        "(FORESIGHT_EVENT_TIME_MAX_FUTURE_S); accelerated simulations raise it",
    )
    event_time_floor: AwareDatetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="events dated before this instant are dead letters "
        "(event_time_out_of_bounds) (FORESIGHT_EVENT_TIME_FLOOR, ISO 8601 with a zone)",
    )
    session_timeout_s: float = Field(
        default=10.0, ge=3.0, le=300.0,
        description="a worker silent this long loses its partitions (FORESIGHT_SESSION_TIMEOUT_S)",
    )
    static_membership: bool = Field(
        default=False,
        description="the packer joins its consumer group as a static member (Kafka "
        "group.instance.id = worker id): a worker restarted within the session timeout gets "
        "its input partitions back without a rebalance, but a worker that stops for good "
        "holds them for the session timeout (a static member never leaves the group on "
        "close), so the default is off (FORESIGHT_STATIC_MEMBERSHIP)",
    )
    stall_after_s: float = Field(
        default=30.0, ge=1.0,
        description="with work waiting and nothing committed for this long the worker reports "
        "'stalled' on /health, /progress and foresight_worker_stalled, and logs it at ERROR "
        "once a minute (FORESIGHT_STALL_AFTER_S)",
    )
    stall_exit_s: float = Field(
        default=120.0, ge=10.0,
        description="a worker stalled this long while the broker answers exits non-zero so its "
        "supervisor restarts it; while the broker is unreachable it waits for it instead "
        "(FORESIGHT_STALL_EXIT_S)",
    )
    stream_processing_timeout_s: float = Field(
        default=300.0, ge=1.0,
        description="Faust's own stall monitor (stream_processing_timeout and "
        "broker_commit_livelock_soft_timeout): every 2.5 s it checks each assigned partition "
        "and logs an ERROR for one fetched but not processed, or processed but not committed, "
        "for this long; tests shorten it to reach the check in seconds "
        "(FORESIGHT_STREAM_PROCESSING_TIMEOUT_S)",
    )
    shutdown_timeout_s: float = Field(
        default=10.0, ge=2.0, le=300.0,
        description="SIGTERM: commit what was processed, hand the partitions over and exit "
        "within this long; past it the process exits anyway, uncommitted work is redone by "
        "the next owner (FORESIGHT_SHUTDOWN_TIMEOUT_S)",
    )
    packer: Literal["process", "thread", "off"] = Field(
        default="process",
        description="where the worker runs the packing front stage: a child process (its "
        "own core), a thread, or off when 'foresight packer' runs elsewhere (FORESIGHT_PACKER)",
    )

    screen_url: str | None = Field(
        default=None,
        description="screen service the worker pushes screen pops to, e.g. "
        "http://127.0.0.1:6070 ('foresight screen serve'); unset: pops are counted, not sent "
        "(FORESIGHT_SCREEN_URL)",
    )
    screen_token: SecretStr | None = Field(
        default=None,
        description="bearer token between workers and the screen service (pushes in, "
        "one-key views out); defaults to FORESIGHT_API_TOKEN (FORESIGHT_SCREEN_TOKEN)",
    )
    screen_agents: str | None = Field(
        default=None,
        description="agents of the screen service: a YAML/JSON file mapping agent id to "
        "token, or inline 'A001=token1,A002=token2' (FORESIGHT_SCREEN_AGENTS)",
    )
    screen_port: int = Field(default=6070, description="screen service port "
                             "(FORESIGHT_SCREEN_PORT)")
    worker_url: str = Field(
        default="http://127.0.0.1:6066",
        description="a worker's web server the screen service asks for one-key views; any "
        "worker forwards to the owner (FORESIGHT_WORKER_URL)",
    )

    @field_validator("sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
                     "ssl_key_password", "api_token", "screen_token", "screen_url",
                     "screen_agents", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # compose files and CI templates pass unset variables as empty strings
        return None if v == "" else v

    @field_validator("store")
    @classmethod
    def _known_store(cls, v: str) -> str:
        if not (v.startswith("memory://") or v.startswith("rocksdb://")):
            raise ValueError("store must be memory:// or rocksdb://")
        return v

    @property
    def local_broker(self) -> bool:
        """True when no external cluster is configured: use the embedded broker."""
        return not self.bootstrap_servers

    @property
    def brokers(self) -> str:
        """The bootstrap list every client uses."""
        return self.bootstrap_servers or f"127.0.0.1:{self.local_port}"

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def check_security(self) -> None:
        """Refuse security settings that cannot work together, before any client is built.

        librdkafka and aiokafka would otherwise fail later with a handshake error that does
        not name the variable to fix, or (worse) silently connect without the credentials
        the operator meant to use.

        >>> Settings(security_protocol="SASL_SSL").check_security()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streams.errors.ConfigError: FORESIGHT_SECURITY_PROTOCOL=SASL_SSL needs FORESIGHT_SASL_USERNAME...
        """
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ConfigError(f"FORESIGHT_SECURITY_PROTOCOL={protocol} needs FORESIGHT_SASL_USERNAME "
                              "and FORESIGHT_SASL_PASSWORD: set both")
        if not sasl and (self.sasl_username or self.sasl_password):
            raise ConfigError(
                f"FORESIGHT_SASL_USERNAME/_PASSWORD are set but FORESIGHT_SECURITY_PROTOCOL={protocol} "
                "does not authenticate with them: set FORESIGHT_SECURITY_PROTOCOL=SASL_SSL "
                "(or SASL_PLAINTEXT on a trusted network), or unset them")
        files = {"FORESIGHT_SSL_CAFILE": self.ssl_cafile, "FORESIGHT_SSL_CERTFILE": self.ssl_certfile,
                 "FORESIGHT_SSL_KEYFILE": self.ssl_keyfile}
        given = [name for name, path in files.items() if path is not None]
        if not tls and (given or self.ssl_key_password):
            names = ", ".join(given or ["FORESIGHT_SSL_KEY_PASSWORD"])
            raise ConfigError(f"{names} set but FORESIGHT_SECURITY_PROTOCOL={protocol} does not use "
                              "TLS: set FORESIGHT_SECURITY_PROTOCOL=SSL or SASL_SSL, or unset them")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("a client certificate needs its key: set both FORESIGHT_SSL_CERTFILE "
                              "and FORESIGHT_SSL_KEYFILE (or neither)")
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise ConfigError("FORESIGHT_SSL_KEY_PASSWORD is set without FORESIGHT_SSL_KEYFILE: "
                              "set the key file or unset the password")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ConfigError(f"{name}={path} is not a readable file: fix the path")

    def kafka_client_config(self) -> dict[str, str]:
        """Connection and security settings shared by every confluent-kafka client.

        Every librdkafka client (packer, committer, restore consumer, admin, simulator,
        bench) starts from this dict, so a secured cluster needs no per-client setup.
        Faust's own aiokafka clients get the same settings from
        :func:`streams.security.faust_credentials`.

        >>> Settings(bootstrap_servers="k:9093", security_protocol="SASL_SSL",
        ...          sasl_mechanism="SCRAM-SHA-512", sasl_username="fs",
        ...          sasl_password="pw").kafka_client_config()["sasl.mechanisms"]
        'SCRAM-SHA-512'
        """
        self.check_security()
        conf: dict[str, str] = {
            "bootstrap.servers": self.brokers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_") and self.sasl_username and self.sasl_password:
            conf["sasl.mechanisms"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile is not None:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            conf["ssl.certificate.location"] = str(self.ssl_certfile)
            conf["ssl.key.location"] = str(self.ssl_keyfile)
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf
