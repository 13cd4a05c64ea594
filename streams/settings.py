"""The one settings object, built once from ``TWINMON_*`` environment variables."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINMON_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers' certificates")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate, for mutual TLS")
    kafka_ssl_keyfile: str | None = None
    redis_ssl_cafile: str | None = Field(None, description="CA bundle for a rediss:// URL")
    require_tls: bool = Field(False, description="Refuse to start unless Kafka (SSL or SASL_SSL) and Redis "
                              "(rediss://) are both reached over TLS")
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL; may carry a password, so it is secret"
    )
    redis_cluster: bool = Field(False, description="TWINMON_REDIS_URL is one node of a Redis Cluster: discover the "
                                "others from it and send each patient's keys to the node of their hash slot")
    redis_prefix: str = Field("twinmon", description="Prefix of every Redis key")
    app_id: str = Field("twinmon", description="Consumer group and Faust application id")
    topic_vitals: str = "vitals"
    topic_dlq: str = "vitals.dlq"
    topic_alerts: str = "alerts"
    topic_enrolments: str = "enrolments"
    topic_alert_actions: str = "alert-actions"
    history_length: int = Field(720, ge=0, description="History points kept per patient in Redis (1/vital/min)")
    partitions: int = Field(8, ge=1, description="Partitions of the vitals topic when twinmon creates it")
    replication_factor: int = Field(1, ge=1)
    batch_max: int = Field(2000, ge=1, description="Most events handed to the twin core at once")
    batch_within_ms: int = Field(50, ge=1, description="Longest wait to fill a batch (stock consumer only: with "
                                 "fast_drain each fetch is processed at once)")
    batch_target_ms: int = Field(25, ge=1, description="About how long one chunk of a batch is processed for before "
                                 "it is stored and acknowledged and the event loop runs anything else (fast_drain; "
                                 "streams/chunks.py)")
    batch_queue_fetches: int = Field(4, ge=1, description="Fetches of vitals waiting for the batch loop before the "
                                     "consumer waits for room (fast_drain)")
    stream_buffer: int = Field(65536, ge=1, description="Fetched messages a worker buffers per stream before "
                               "the fetcher waits (Faust's stream_buffer_maxsize)")
    kafka_fetch_max_wait_ms: int = Field(25, ge=1, le=1500, description="Longest the broker holds the worker's "
                                         "fetch while it has no data for it (Faust's own is 1,500 ms: a pause of "
                                         "that long whenever the fetch asked only for idle partitions)")
    fast_drain: bool = Field(True, description="Hand fetched messages to the streams without two tasks each "
                             "(streams/fastdrain.py); false = faust-streaming's stock consumer")
    metrics_host: str = Field("127.0.0.1", description="Address the Prometheus endpoint binds")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of the Prometheus endpoint (0 = off)")
    metrics_token: SecretStr | None = Field(None, description="Bearer token /metrics requires (unset = none); "
                                            "the probes /healthz and /readyz stay open")
    data_dir: str = Field(".twinmon/worker", description="Faust's working directory for this worker")
    log_level: str = "info"
    policy_file: str | None = Field(None, description="The policy file (TOML, docs/policy.md) whose thresholds the "
                                    "worker runs; unset = the code defaults (deploy/policy/default.toml)")

    # Riding out Redis outages and dead workers (streams/outage.py, docs/runbook.md).
    redis_retry_initial_ms: int = Field(100, ge=1, description="First wait before retrying while Redis is down")
    redis_retry_max_ms: int = Field(10_000, ge=1, description="Longest wait between retries while Redis is down")
    redis_socket_timeout_s: float = Field(
        30.0, gt=0, description="A Redis call unanswered this long counts as an outage and is retried")
    kafka_session_timeout_s: float = Field(
        30.0, ge=6, description="A worker silent this long loses its partitions to the others in its group")

    # The care-team feed (`twinmon serve`, package feed/).
    api_host: str = Field("127.0.0.1", description="Address the feed's HTTP API and web page bind")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of the feed's HTTP API and web page")
    tokens_file: str = Field(".twinmon/tokens.json", description="Bearer tokens: SHA-256 hashes, user, team")
    topic_audit: str = Field("audit", description="Append-only audit trail of enrolment changes and alert actions")
    audit_key: SecretStr | None = Field(None, description="HMAC key that signs the audit trail "
                                        "(the feed, the CLI's write commands and `twinmon audit verify` need it)")
    api_max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body the API accepts")
    api_heartbeat_s: float = Field(15.0, gt=0, description="Seconds between SSE heartbeat comments")
    api_twin_poll_s: float = Field(2.0, gt=0, description="Seconds between twin summary polls for the SSE stream")
    api_rate_per_s: float = Field(10.0, gt=0, description="Requests per second each bearer token may sustain on "
                                  "/api and /fhir (token bucket refill); beyond it and the burst: 429")
    api_rate_burst: int = Field(60, ge=1, description="Requests one token may make at once before the rate applies "
                                "(the bucket's size)")
    api_streams_per_token: int = Field(4, ge=1, description="Live streams (/api/stream) one token may hold open at "
                                       "once; one more gets 429")

    @field_validator("audit_key")
    @classmethod
    def _audit_key_is_long(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return v

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs TWINMON_KAFKA_SASL_USERNAME and TWINMON_KAFKA_SASL_PASSWORD")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("mutual TLS needs both TWINMON_KAFKA_SSL_CERTFILE and TWINMON_KAFKA_SSL_KEYFILE")
        redis_tls = self.redis_url.get_secret_value().startswith("rediss://")
        # A CA file says TLS was meant; with a plaintext URL it would be unused and the connection unencrypted.
        if self.redis_ssl_cafile and not redis_tls:
            raise ValueError("TWINMON_REDIS_SSL_CAFILE is set but TWINMON_REDIS_URL does not start with rediss://: "
                             "the connection would not use TLS (use rediss://, or unset the CA file)")
        if self.require_tls:
            if "SSL" not in self.kafka_security_protocol:
                sasl = " (SASL over plaintext exposes the login)" if "SASL" in self.kafka_security_protocol else ""
                raise ValueError(f"TWINMON_REQUIRE_TLS is on but TWINMON_KAFKA_SECURITY_PROTOCOL is "
                                 f"{self.kafka_security_protocol}{sasl}: use SASL_SSL or SSL")
            if not redis_tls:
                raise ValueError("TWINMON_REQUIRE_TLS is on but TWINMON_REDIS_URL does not start with rediss://")
        return self

    @model_validator(mode="after")
    def _redis_cluster_url(self) -> Settings:
        """The URL's scheme (a typo such as ``redis+cluster://`` is named, not left to the client), and for a
        cluster what a cluster cannot have: a Unix socket, a database other than 0. Never echoes the URL."""
        parts = urlsplit(self.redis_url.get_secret_value())
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("TWINMON_REDIS_URL must start with redis://, rediss:// (TLS) or unix://; for a Redis "
                             "Cluster use redis:// or rediss:// with TWINMON_REDIS_CLUSTER=true")
        if self.redis_cluster:
            if parts.scheme == "unix":
                raise ValueError("TWINMON_REDIS_CLUSTER is on but TWINMON_REDIS_URL is a unix:// socket: a Redis "
                                 "Cluster is reached over TCP (redis:// or rediss://)")
            if parts.path.strip("/") not in ("", "0") or parse_qs(parts.query).get("db", ["0"]) != ["0"]:
                raise ValueError("TWINMON_REDIS_CLUSTER is on but TWINMON_REDIS_URL names a database other than 0: "
                                 "a Redis Cluster has only database 0 (end the URL in /0 or leave the path out)")
        return self
