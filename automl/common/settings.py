"""Every setting of the suite, read from environment variables in one place.

Each field of `Settings` names its environment variable and says what it is
for; docs/configuration.md's table is generated from these fields
(`make docs`), and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _setting(env: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Configuration of the suite's processes. Build it with `from_env()`."""

    host: str = _setting("AUTOML_HOST", "127.0.0.1", "Address every service binds to.")
    gateway_port: int = _setting("AUTOML_GATEWAY_PORT", 50051, "gRPC port of the public gateway.")
    storage_port: int = _setting("AUTOML_STORAGE_PORT", 50052, "gRPC port of the storage service.")
    runner_port: int = _setting("AUTOML_RUNNER_PORT", 50053, "gRPC port of the runner service.")
    notifier_port: int = _setting("AUTOML_NOTIFIER_PORT", 50054, "gRPC port of the notifier service.")
    http_port: int = _setting("AUTOML_HTTP_PORT", 8080, "HTTP port of the gateway (metrics, health, dashboard).")
    metrics_port: int = _setting(
        "AUTOML_METRICS_PORT",
        0,
        "Port of a listener of its own for the gateway's `/metrics` (and `/healthz`), in plain HTTP, for a network "
        "the public does not reach; the HTTP port then answers 404 for `/metrics`. 0: `/metrics` on the HTTP port.",
    )
    metrics_host: str = _setting(
        "AUTOML_METRICS_HOST", "", "Address the metrics listener (AUTOML_METRICS_PORT) binds to. Empty: AUTOML_HOST."
    )
    storage_target: str = _setting(
        "AUTOML_STORAGE_TARGET", "", "Address the other services call storage at. Empty: 127.0.0.1:<storage port>."
    )
    runner_target: str = _setting(
        "AUTOML_RUNNER_TARGET", "", "Address the gateway calls the runner at. Empty: 127.0.0.1:<runner port>."
    )
    notifier_target: str = _setting(
        "AUTOML_NOTIFIER_TARGET", "", "Address the notifier is called at. Empty: 127.0.0.1:<notifier port>."
    )
    data_dir: Path = _setting(
        "AUTOML_DATA_DIR",
        Path("var"),
        "Folder of the embedded defaults: SQLite database, blob folder, logs and pid files of `make up`/`make demo`.",
    )
    launcher_max_restarts: int = _setting(
        "AUTOML_LAUNCHER_MAX_RESTARTS",
        5,
        "How many times `make up`/`make demo` restart a service that dies, within "
        "AUTOML_LAUNCHER_RESTART_WINDOW_SECONDS (after 1 s, then 2, 4, ... up to 30 s); past it the service is left "
        "down and the others keep serving. 0: never restart.",
    )
    launcher_restart_window_seconds: float = _setting(
        "AUTOML_LAUNCHER_RESTART_WINDOW_SECONDS",
        300.0,
        "Window of AUTOML_LAUNCHER_MAX_RESTARTS, in seconds: older restarts no longer count, and the backoff "
        "starts again from 1 s.",
    )
    database_url: str = _setting(
        "AUTOML_DATABASE_URL",
        "",
        "SQLAlchemy URL of the metadata database: sqlite:///path, postgresql+psycopg://..., "
        "mssql+pyodbc://... Empty: sqlite:///<data dir>/automl.db.",
    )
    blob_url: str = _setting(
        "AUTOML_BLOB_URL",
        "",
        "Where payloads over the inline limit go: file:///path (a local folder) or s3://bucket. "
        "Empty: file://<data dir>/blobs.",
    )
    s3_endpoint: str = _setting("AUTOML_S3_ENDPOINT", "", "host:port of the S3/MinIO server for an s3:// blob URL.")
    s3_access_key: str = _setting("AUTOML_S3_ACCESS_KEY", "", "Access key of the S3/MinIO server.")
    s3_secret_key: str = _setting("AUTOML_S3_SECRET_KEY", "", "Secret key of the S3/MinIO server.")
    s3_secure: bool = _setting("AUTOML_S3_SECURE", False, "Use HTTPS to reach the S3/MinIO server.")
    s3_region: str = _setting("AUTOML_S3_REGION", "", "Region of the S3 bucket (empty: the server's default).")
    inline_max_bytes: int = _setting(
        "AUTOML_INLINE_MAX_BYTES", 256 * 1024, "Payloads up to this size are stored inline in SQL, larger in blobs."
    )
    # Bounded input (issue 21): each refused RESOURCE_EXHAUSTED, naming the setting, leaving nothing stored.
    upload_max_bytes: int = _setting(
        "AUTOML_UPLOAD_MAX_BYTES",
        10 * 1024 * 1024 * 1024,
        "Largest dataset file storage accepts, in bytes, whatever door it came through; the upload is refused "
        "when it passes this, before the rest is read.",
    )
    csv_max_columns: int = _setting(
        "AUTOML_CSV_MAX_COLUMNS",
        250,
        "Most columns of an uploaded CSV file; more are refused on the header, before any column's statistics "
        "are made. Storage's peak memory while profiling grows with it: columns of distinct values measured "
        "180-205 MB in all at 1,000 and up to 203 MB at 500, against storage's 200 MB goal; 250 keep a margin.",
    )
    csv_max_line_bytes: int = _setting(
        "AUTOML_CSV_MAX_LINE_BYTES",
        256 * 1024,
        "Longest line of an uploaded CSV file, in bytes (a row whose quoted fields hold line breaks may take up "
        "to twice this). The CSV reader's block is twice this, 512 KiB at least: storage holds about 6 blocks "
        "per upload.",
    )
    csv_max_field_bytes: int = _setting(
        "AUTOML_CSV_MAX_FIELD_BYTES",
        128 * 1024,
        "Longest field (one value, or a column name) of an uploaded CSV file, in bytes; at most "
        "AUTOML_CSV_MAX_LINE_BYTES.",
    )
    tenant_max_datasets: int = _setting(
        "AUTOML_TENANT_MAX_DATASETS", 1000, "Datasets a tenant may keep at once. 0: no limit."
    )
    tenant_max_stored_bytes: int = _setting(
        "AUTOML_TENANT_MAX_STORED_BYTES",
        100 * 1024 * 1024 * 1024,
        "Bytes of dataset files a tenant may keep at once (each dataset counts its size, even when its bytes are "
        "shared with another). Artifacts (models, predictions) do not count: the runner writes them for the "
        "tenant's runs, which AUTOML_TENANT_MAX_ACTIVE_RUNS bounds, and they go with their experiment. 0: no limit.",
    )
    tenant_max_active_runs: int = _setting(
        "AUTOML_TENANT_MAX_ACTIVE_RUNS",
        20,
        "Runs a tenant may have PENDING, RUNNING or STOPPING at once; one more is refused until one ends. 0: no limit.",
    )
    tenant_max_queued_runs: int = _setting(
        "AUTOML_TENANT_MAX_QUEUED_RUNS",
        20,
        "Runs a tenant may have QUEUED (waiting for a runner with capacity) at once; a run that would queue past "
        "it is CANCELLED and StartRun answers RESOURCE_EXHAUSTED. Runs taken over after their runner was lost "
        "always queue. 0: no limit.",
    )
    run_max_takeovers: int = _setting(
        "AUTOML_RUN_MAX_TAKEOVERS",
        3,
        "Times a run whose runner is lost (no heartbeat for AUTOML_RUNNER_LOST_SECONDS) is queued again for "
        "another runner (or the same one, restarted) to take over; once more, it is FAILED (RUNNER_LOST) with "
        "its results kept. 0: never taken over. A runner that shuts down hands its runs back: that is no takeover.",
    )
    tenant_max_open_streams: int = _setting(
        "AUTOML_TENANT_MAX_OPEN_STREAMS",
        5000,  # room for a dashboard wall: 1,000 watchers of one run is a benchmarked case
        "WatchRun and Subscribe streams (gRPC or HTTP) a tenant may hold open at once on one gateway process; "
        "one more is refused until one closes. 0: no limit.",
    )
    heartbeat_seconds: float = _setting(
        "AUTOML_HEARTBEAT_SECONDS", 10.0, "An idle event stream sends a heartbeat this often, in seconds."
    )
    subscriber_queue: int = _setting(
        "AUTOML_SUBSCRIBER_QUEUE",
        10_000,
        "Events a stream subscriber may fall behind before its stream ends (RESOURCE_EXHAUSTED; it resumes).",
    )
    stream_messages_per_second: int = _setting(
        "AUTOML_STREAM_MESSAGES_PER_SECOND",
        12_500,
        "Messages per second the notifier's streams send together at most: each stream sends one message per "
        "(open streams / this) seconds at most, with the events that came meanwhile. Higher: shorter delays, more CPU.",
    )
    webhook_max_attempts: int = _setting(
        "AUTOML_WEBHOOK_MAX_ATTEMPTS", 8, "Delivery attempts of one webhook event before the subscription gives up."
    )
    webhook_backoff_seconds: float = _setting(
        "AUTOML_WEBHOOK_BACKOFF_SECONDS", 0.5, "First retry delay of a failed webhook delivery; doubles each attempt."
    )
    webhook_allow_networks: str = _setting(
        "AUTOML_WEBHOOK_ALLOW_NETWORKS",
        "",
        "Comma-separated networks (CIDRs, e.g. 10.20.0.0/16,127.0.0.1/32) webhook targets may resolve to although "
        "they are loopback, private, link-local, multicast or otherwise not public: for on-premises receivers. The "
        "suite's own services stay refused. Empty: public addresses only.",
    )
    webhook_secret_key: str = _setting(
        "AUTOML_WEBHOOK_SECRET_KEY",
        "",
        "Secret (32 characters or more) from which the key that encrypts webhook secrets at rest (AES-256-GCM) is "
        "derived; notifiers sharing a database need the same one. Empty: a random key kept in "
        "<data dir>/notifier-webhook.key, made on first start (losing it leaves existing webhooks unable to sign: "
        "they give up and must be created again).",
    )
    runner_max_workers: int = _setting(
        "AUTOML_RUNNER_MAX_WORKERS",
        0,
        "Worker processes one runner uses at most, over all its runs. 0: the number of cores.",
    )
    runner_model_time_limit_seconds: float = _setting(
        "AUTOML_RUNNER_MODEL_TIME_LIMIT_SECONDS",
        300.0,
        "Per-candidate time limit when a run sets none; the worker is killed past it.",
    )
    runner_worker_memory_mb: int = _setting(
        "AUTOML_RUNNER_WORKER_MEMORY_MB",
        4096,
        "Resident memory one worker process may use; past it, the worker is killed and the candidate "
        "recorded OUT_OF_MEMORY. 0: no limit.",
    )
    runner_worker_nice: int = _setting(
        "AUTOML_RUNNER_WORKER_NICE",
        10,
        "How much lower a search worker's CPU priority is than the services' (Unix nice, 0-19): when fitting "
        "candidates takes every core, the services' answers, WatchRun events and Predict still get the CPU "
        "first, and a search alone on the machine runs as fast. 0: the same priority.",
    )
    runner_stop_grace_seconds: float = _setting(
        "AUTOML_RUNNER_STOP_GRACE_SECONDS",
        5.0,
        "When a run stops, how long candidates under way may finish before their workers are killed.",
    )
    runner_heartbeat_seconds: float = _setting(
        "AUTOML_RUNNER_HEARTBEAT_SECONDS", 5.0, "How often a runner tells storage that each of its runs is alive."
    )
    runner_train_time_limit_seconds: float = _setting(
        "AUTOML_RUNNER_TRAIN_TIME_LIMIT_SECONDS",
        3600.0,
        "Longest refit of a chosen model on every training row; the worker is killed past it.",
    )
    runner_sample_cells: int = _setting(
        "AUTOML_RUNNER_SAMPLE_CELLS",
        1_000_000,
        "A dataset of more cells (rows x columns) is searched on a stratified sample of about this many cells, "
        "read in two streamed passes; the chosen model is refitted on every training row. 0: never sample.",
    )
    runner_model_cache: int = _setting(
        "AUTOML_RUNNER_MODEL_CACHE",
        8,
        "Trained models a runner keeps loaded for Predict, each in a worker process (least recently used out).",
    )
    runner_model_key: str = _setting(
        "AUTOML_RUNNER_MODEL_KEY",
        "",
        "Secret (32 characters or more) with which runners seal the model files they write (HMAC-SHA256) and "
        "check them before loading; runners that share models need the same one. Empty: a random key kept in "
        "<data dir>/runner-model.key, made on first start (losing it makes stored models unusable).",
    )
    runner_outbox_events: int = _setting(
        "AUTOML_RUNNER_OUTBOX_EVENTS",
        10_000,
        "Run events a runner keeps while the notifier does not take them, published in order when it answers "
        "again (retried with the same event ids: none stored twice); when full, the oldest are dropped, with a "
        "log line saying how many.",
    )
    dask_scheduler: str = _setting(
        "AUTOML_DASK_SCHEDULER",
        "",
        "Address of a Dask scheduler (tcp://host:8786) that evaluates candidates. Empty: local worker processes.",
    )
    runner_id: str = _setting("AUTOML_RUNNER_ID", "", "Id of this runner process. Empty: <hostname>-<pid>.")
    auth: str = _setting(
        "AUTOML_AUTH",
        "api_key",
        "Authentication of the public API: api_key (a Bearer key created with `python -m gateway.admin`, "
        "mapped to a tenant) or none (every caller is the tenant `default`: the embedded single-user setup; "
        "`make demo` and `make up` use it).",
    )
    api_key_cache_seconds: float = _setting(
        "AUTOML_API_KEY_CACHE_SECONDS",
        5.0,
        "How long the gateway trusts a key it checked with storage; a revoked key stops working within this time.",
    )
    auth_max_failures: int = _setting(
        "AUTOML_AUTH_MAX_FAILURES",
        20,
        "Failed API-key checks (unknown, revoked or malformed key) one client address may make within "
        "AUTOML_AUTH_FAILURE_WINDOW_SECONDS of its first; past it, until the window ends, its calls are refused "
        "RESOURCE_EXHAUSTED (HTTP 429) with a retry delay, before storage is asked, unless their key was checked "
        "lately. An IPv6 client counts by its /64. 0: no limit.",
    )
    auth_failure_window_seconds: float = _setting(
        "AUTOML_AUTH_FAILURE_WINDOW_SECONDS", 60.0, "Window of AUTOML_AUTH_MAX_FAILURES, in seconds."
    )
    internal_secret: str = _setting(
        "AUTOML_INTERNAL_SECRET",
        "",
        "Secret (32 characters or more) from which the services' credentials for calls between them are made "
        "(automl.common.identity); every service of a deployment needs the same one. Empty: a random key kept in "
        "<data dir>/internal.key, made on first start (the embedded single-machine setup).",
    )
    internal_tls_ca_file: str = _setting(
        "AUTOML_INTERNAL_TLS_CA_FILE",
        "",
        "PEM certificate of the CA that signs every service's certificate (scripts/make_certs.py): set it, with "
        "AUTOML_INTERNAL_TLS_CERT_FILE and _KEY_FILE, and the services talk mutual TLS, each refusing a peer "
        "without a certificate of that CA. Empty: plaintext between services (the embedded default, on loopback).",
    )
    internal_tls_cert_file: str = _setting(
        "AUTOML_INTERNAL_TLS_CERT_FILE",
        "",
        "PEM certificate of this process for mutual TLS between services; its common name is its identity "
        "(gateway, storage, runner, notifier or admin).",
    )
    internal_tls_key_file: str = _setting(
        "AUTOML_INTERNAL_TLS_KEY_FILE", "", "PEM private key that goes with AUTOML_INTERNAL_TLS_CERT_FILE."
    )
    tls_cert_file: str = _setting(
        "AUTOML_TLS_CERT_FILE",
        "",
        "PEM certificate chain of the gateway's gRPC port and HTTP port (HTTPS). Empty: no TLS (plaintext).",
    )
    tls_key_file: str = _setting("AUTOML_TLS_KEY_FILE", "", "PEM private key that goes with AUTOML_TLS_CERT_FILE.")
    supervisor_interval_seconds: float = _setting(
        "AUTOML_SUPERVISOR_INTERVAL_SECONDS",
        1.0,
        "How often the gateway checks every active run's stop conditions and runner heartbeat.",
    )
    runner_lost_seconds: float = _setting(
        "AUTOML_RUNNER_LOST_SECONDS",
        30.0,
        "A run whose runner sent no heartbeat for this long is queued again to be taken over (up to "
        "AUTOML_RUN_MAX_TAKEOVERS times, then FAILED, RUNNER_LOST), its results kept; a run still PENDING this long "
        "after it was created (its gateway died while starting it) is queued; a training whose runner gave no sign "
        "of life for this long is FAILED.",
    )
    blob_sweep_seconds: float = _setting(
        "AUTOML_BLOB_SWEEP_SECONDS",
        3600.0,
        "How often storage removes blobs no content row names and unfinished uploads (temporary files, S3 "
        "multipart uploads) that a crash left; it also does at start-up.",
    )
    blob_sweep_grace_seconds: float = _setting(
        "AUTOML_BLOB_SWEEP_GRACE_SECONDS",
        3600.0,
        "Only blobs and unfinished uploads older than this are swept: an upload under way is never taken for "
        "one a crash left.",
    )
    migrate_on_start: bool = _setting(
        "AUTOML_MIGRATE_ON_START", True, "Storage upgrades the database schema (Alembic) to head before serving."
    )
    database_wait_seconds: float = _setting(
        "AUTOML_DATABASE_WAIT_SECONDS",
        120.0,
        "How long storage retries, at start, a database server that does not answer yet (one log line per try); "
        "then it stops with the last error. 0: try once. The embedded SQLite file is never waited for.",
    )
    log_level: str = _setting("AUTOML_LOG_LEVEL", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting("AUTOML_LOG_FORMAT", "text", "Log line format: text (key=value) or json.")
    call_timeout_seconds: float = _setting(
        "AUTOML_CALL_TIMEOUT_SECONDS", 30.0, "Deadline of every outgoing unary call between services, in seconds."
    )
    gc_threshold: int = _setting(
        "AUTOML_GC_THRESHOLD",
        10_000,
        "Python's young-generation garbage-collection threshold in each service process (Python's default: 700), "
        "and what the process made while starting is frozen out of every later collection. With a thousand "
        "open streams, the default made the gateway pause for collections 3 to 12 ms at a time, and over 50 ms "
        "for a full one, in the middle of fanning an event out. 0: Python's defaults, nothing frozen.",
    )
    shutdown_grace_seconds: float = _setting(
        "AUTOML_SHUTDOWN_GRACE_SECONDS", 10.0, "On SIGTERM, how long calls in flight may finish before they are cut."
    )
    max_message_bytes: int = _setting(
        "AUTOML_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, "Largest gRPC message a service sends or accepts, in bytes."
    )
    # The HTTP door reads a JSON body whole before parsing it, so it is capped
    # before a byte is read; the default fits the largest gRPC message (a
    # Predict CSV) as base64 with room to spare.
    http_max_body_bytes: int = _setting(
        "AUTOML_HTTP_MAX_BODY_BYTES",
        64 * 1024 * 1024,
        "Largest request body of an HTTP/JSON method, in bytes: a larger Content-Length, or a body that grows "
        "past it, is refused 413 before it is parsed or its API key checked. Uploads have their own limit.",
    )
    http_max_upload_bytes: int = _setting(
        "AUTOML_HTTP_MAX_UPLOAD_BYTES",
        10 * 1024 * 1024 * 1024,
        "Largest raw body of an HTTP upload (datasets:upload, :predictStream), in bytes; it is streamed "
        "through, never held whole. A larger Content-Length, or a body that grows past it, is refused 413 and "
        "nothing is stored.",
    )
    http_max_json_depth: int = _setting(
        "AUTOML_HTTP_MAX_JSON_DEPTH",
        64,
        "Deepest nesting of arrays and objects in an HTTP/JSON request body; deeper is refused 400.",
    )
    http_gzip_bytes: int = _setting(
        "AUTOML_HTTP_GZIP_BYTES",
        1024,
        "Smallest HTTP/JSON answer the gateway gzips for a client that sends `Accept-Encoding: gzip` (JSON-lines "
        "exports are gzipped whatever their size; live streams never). 0: never gzip.",
    )
    gateway_cache_entries: int = _setting(
        "AUTOML_GATEWAY_CACHE_ENTRIES",
        2000,
        "Answers that no longer change (an ended run, its leaderboard and result pages, model results) the gateway "
        "keeps in memory per process, least recently used dropped first; each tenant's apart. 0: no cache.",
    )
    gateway_cache_ttl_seconds: float = _setting(
        "AUTOML_GATEWAY_CACHE_TTL_SECONDS",
        10.0,
        "How long the gateway serves a kept answer before asking storage again: bounds how stale it can be after "
        "a delete made through another gateway process, or events added to an ended run (a model trained or "
        "tested later). Deletes and trainings through the same process drop the tenant's entries at once. "
        "0: no cache.",
    )
    gateway_running_ttl_seconds: float = _setting(
        "AUTOML_GATEWAY_RUNNING_TTL_SECONDS",
        0.5,
        "How long the gateway answers a running run's GetRun, leaderboard and result pages from memory (many "
        "clients following one run ask for them many times a second): the most they lag behind the run for a "
        "client that does not watch it through this gateway process. The run's events seen by a WatchRun of the "
        "process, and StopRun through it, drop them at once. 0: always asked of storage.",
    )
    gateway_watch_buffer: int = _setting(
        "AUTOML_GATEWAY_WATCH_BUFFER",
        1000,
        "Messages of a run's event stream the gateway keeps for the run's WatchRun streams, which all share one "
        "notifier stream per run and process; a watcher more than this many behind goes on from its position on "
        "a notifier stream of its own (replayed from storage).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `environ` (default: os.environ); unset ones keep their default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(f.metadata["env"], raw.strip(), type(f.default))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise SettingsError naming the first setting whose value cannot work."""
        for name in ("gateway_port", "storage_port", "runner_port", "notifier_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise SettingsError(f"{env_name(name)}={port}: a port is between 0 and 65535")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"AUTOML_LOG_LEVEL={self.log_level}: use DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"AUTOML_LOG_FORMAT={self.log_format}: use text or json")
        if self.metrics_port and self.metrics_port == self.http_port:
            raise SettingsError(f"AUTOML_METRICS_PORT={self.metrics_port}: use a port other than AUTOML_HTTP_PORT")
        for name in (
            "runner_max_workers",
            "runner_worker_memory_mb",
            "runner_sample_cells",
            "launcher_max_restarts",
            "auth_max_failures",
            "gc_threshold",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)}: must be 0 or more")
        for name in ("runner_model_key", "internal_secret"):
            if 0 < len(getattr(self, name)) < 32:
                raise SettingsError(f"{env_name(name)}: use 32 characters or more (e.g. `openssl rand -hex 32`)")
        if self.auth not in ("api_key", "none"):
            raise SettingsError(f"AUTOML_AUTH={self.auth}: use api_key or none")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("AUTOML_TLS_CERT_FILE and AUTOML_TLS_KEY_FILE go together: set both or neither")
        internal_tls = ("internal_tls_ca_file", "internal_tls_cert_file", "internal_tls_key_file")
        if len({bool(getattr(self, name)) for name in internal_tls}) > 1:
            raise SettingsError(
                "AUTOML_INTERNAL_TLS_CA_FILE, _CERT_FILE and _KEY_FILE go together: set all three or none"
            )
        for name in ("tls_cert_file", "tls_key_file", *internal_tls):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SettingsError(f"{env_name(name)}={path}: no such file")
        if self.database_wait_seconds < 0:
            raise SettingsError(f"AUTOML_DATABASE_WAIT_SECONDS={self.database_wait_seconds}: must be 0 or more")
        if self.api_key_cache_seconds < 0:
            raise SettingsError(f"AUTOML_API_KEY_CACHE_SECONDS={self.api_key_cache_seconds}: must be 0 or more")
        if self.webhook_secret_key and len(self.webhook_secret_key) < 32:
            raise SettingsError("AUTOML_WEBHOOK_SECRET_KEY: use 32 characters or more (e.g. `openssl rand -hex 32`)")
        try:
            self.webhook_networks  # noqa: B018 - parsed to be checked
        except ValueError as exc:
            raise SettingsError(f"AUTOML_WEBHOOK_ALLOW_NETWORKS={self.webhook_allow_networks}: {exc}") from None
        if self.blob_url.startswith("s3://") and not self.s3_endpoint:
            raise SettingsError("AUTOML_BLOB_URL is s3://...: set AUTOML_S3_ENDPOINT (host:port) too")
        for name in (
            "call_timeout_seconds",
            "shutdown_grace_seconds",
            "max_message_bytes",
            "http_max_body_bytes",
            "http_max_upload_bytes",
            "http_max_json_depth",
            "gateway_watch_buffer",
            "inline_max_bytes",
            "heartbeat_seconds",
            "subscriber_queue",
            "stream_messages_per_second",
            "webhook_max_attempts",
            "webhook_backoff_seconds",
            "runner_model_time_limit_seconds",
            "runner_stop_grace_seconds",
            "runner_heartbeat_seconds",
            "runner_train_time_limit_seconds",
            "runner_model_cache",
            "runner_outbox_events",
            "supervisor_interval_seconds",
            "runner_lost_seconds",
            "blob_sweep_seconds",
            "blob_sweep_grace_seconds",
            "launcher_restart_window_seconds",
            "auth_failure_window_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)}: must be greater than 0")
        self._validate_input_limits()

    def _validate_input_limits(self) -> None:
        for name in (
            "tenant_max_datasets",
            "tenant_max_stored_bytes",
            "tenant_max_active_runs",
            "tenant_max_queued_runs",
            "tenant_max_open_streams",
            "run_max_takeovers",
            "http_gzip_bytes",
            "gateway_cache_entries",
            "gateway_cache_ttl_seconds",
            "gateway_running_ttl_seconds",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)}: must be 0 (no limit) or more")
        if not 0 <= self.runner_worker_nice <= 19:
            raise SettingsError(
                f"AUTOML_RUNNER_WORKER_NICE={self.runner_worker_nice}: a nice value is between 0 (the services' "
                "priority) and 19 (the lowest)"
            )
        for name in ("upload_max_bytes", "csv_max_columns", "csv_max_line_bytes", "csv_max_field_bytes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)}: must be greater than 0")
        if self.csv_max_field_bytes > self.csv_max_line_bytes:
            raise SettingsError(
                f"AUTOML_CSV_MAX_FIELD_BYTES={self.csv_max_field_bytes}: a field fits in its line, "
                f"at most AUTOML_CSV_MAX_LINE_BYTES={self.csv_max_line_bytes}"
            )

    @property
    def database(self) -> str:
        """The metadata database URL, with the embedded default filled in."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'automl.db'}"

    @property
    def blobs(self) -> str:
        """The blob store URL, with the embedded default filled in."""
        return self.blob_url or f"file://{self.data_dir.resolve() / 'blobs'}"

    @property
    def storage_address(self) -> str:
        return self.storage_target or f"127.0.0.1:{self.storage_port}"

    @property
    def runner_address(self) -> str:
        return self.runner_target or f"127.0.0.1:{self.runner_port}"

    @property
    def notifier_address(self) -> str:
        return self.notifier_target or f"127.0.0.1:{self.notifier_port}"

    @property
    def webhook_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """AUTOML_WEBHOOK_ALLOW_NETWORKS parsed (a bare address is a /32 or /128)."""
        parts = (part.strip() for part in self.webhook_allow_networks.split(","))
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)


def env_name(field_name: str) -> str:
    """The environment variable of a Settings field."""
    return next(cast(str, f.metadata["env"]) for f in dataclasses.fields(Settings) if f.name == field_name)


def _parse(env: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{env}={raw!r}: expected {kind.__name__}") from None


def markdown_table() -> str:
    """The configuration table of docs/configuration.md."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default if f.default != "" else "(empty)"
        rows.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
