"""Settings: the one place environment variables and `.env` are read."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "insecure-development-key-change-me-before-production"
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./data/marketmon.db"
MIN_SECRET_KEY_BYTES = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigurationError(RuntimeError):
    """The settings are unsafe or inconsistent; the service refuses to start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- core ---
    app_name: str = "Marketplace Monitor"
    debug: bool = True
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    public_base_url: str = "http://localhost:8000"

    # --- storage ---
    database_url: str = DEFAULT_SQLITE_URL
    allow_sqlite_in_production: bool = False
    database_echo: bool = False
    # PostgreSQL connections each process keeps open, and how many more it may open at peaks
    # (an API process, a worker process: size PostgreSQL's max_connections for all of them).
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)

    # --- broker / cache ---
    redis_url: str = ""
    celery_broker_url: str = ""
    celery_result_backend: str = ""

    # --- auth ---
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=30, ge=1, le=365)
    jwt_audience: str = "marketmon"
    jwt_issuer: str = "marketmon"
    # `limits` storage URI: memory:// in one process, redis://... when several share the limits.
    rate_limit_storage_url: str = "memory://"
    login_ip_rate_limit: str = "10/minute"
    # Failed logins: per account from one address, per address over all accounts, and per
    # account from every address (over it, only addresses that have not failed may try).
    login_pair_failure_limit: str = "5/15minutes"
    login_address_failure_limit: str = "30/hour"
    login_account_failure_limit: str = "100/day"

    # --- HTTP ---
    # NoDecode: the env source would otherwise insist on JSON and refuse "https://a,https://b".
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The interactive docs and the OpenAPI schema under /api/v1/; off hides them in production.
    api_docs_enabled: bool = True
    # Proxies trusted to set X-Forwarded-For/-Proto (comma-separated IPs or networks, or *);
    # uvicorn reads the same variable.
    forwarded_allow_ips: str = "127.0.0.1"
    # GET /listings/ pages each API process keeps as JSON, per user and query (and as many
    # answered requests, for the shortcut); a page is dropped as soon as the user's matches
    # change. 0 turns the cache off.
    listings_page_cache_entries: int = Field(default=2048, ge=0, le=1_000_000)

    # --- logs and metrics ---
    log_level: str = "INFO"
    # auto: JSON lines when DEBUG=False, readable lines otherwise; or json / console.
    log_format: Literal["auto", "json", "console"] = "auto"
    # Bearer token Prometheus sends to GET /metrics; unset = loopback clients only.
    metrics_token: SecretStr = SecretStr("")

    # --- marketplaces ---
    ebay_app_id: str = ""
    ebay_cert_id: SecretStr = SecretStr("")
    ebay_dev_id: str = ""
    # Empty base URLs follow the environment: https://api.ebay.com or https://api.sandbox.ebay.com.
    ebay_environment: Literal["production", "sandbox"] = "production"
    ebay_api_base_url: str = ""
    ebay_oauth_base_url: str = ""
    ebay_max_pages: int = Field(default=2, ge=1, le=50)
    ebay_page_size: int = Field(default=50, ge=1, le=200)
    ebay_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Browse calls per minute shared by every worker; raise it with an eBay quota increase.
    ebay_requests_per_minute: int = Field(default=30, ge=1, le=100_000)
    # ISO country for searches whose location names none (eBay site, currency, delivery).
    default_country: str = Field(default="GB", pattern=r"^[A-Za-z]{2}$")
    # Marketplaces this server checks, comma-separated (e.g. ebay,gumtree); empty = all of them.
    marketplaces_enabled: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Sent to marketplaces read from their public pages; say who you are.
    scraper_user_agent: str = "Mozilla/5.0 (compatible; MarketplaceMonitor/0.1; self-hosted)"
    scraper_timeout_s: float = Field(default=15.0, gt=0, le=120)
    # 429/503 answers retried within one check, and the longest Retry-After waited out.
    scraper_max_retries: int = Field(default=2, ge=0, le=5)
    scraper_max_retry_wait_s: float = Field(default=10.0, ge=0, le=60)
    # Outbound proxy for scraped marketplaces (http://user:pass@host:port); a marketplace's
    # own *_PROXY_URL wins. Feeds (rss) never use it: their SSRF check must see the target.
    http_proxy_url: str = ""
    gumtree_base_url: str = "https://www.gumtree.com"
    gumtree_proxy_url: str = ""
    # {city} is the search's craigslist city (sfbay, london, ...).
    craigslist_base_url: str = "https://{city}.craigslist.org"
    craigslist_api_base_url: str = "https://sapi.craigslist.org"
    craigslist_proxy_url: str = ""
    # {domain} is the search's Vinted domain (co.uk, fr, de, ...); without it, one site
    # serves every search (its currency from its vinted.<domain> host).
    vinted_base_url: str = "https://www.vinted.{domain}"
    vinted_proxy_url: str = ""
    reddit_base_url: str = "https://www.reddit.com"
    # Reddit asks for <platform>:<app id>:<version> (by /u/<your reddit name>).
    reddit_user_agent: str = "python:marketplace-monitor:0.1 (self-hosted)"
    reddit_proxy_url: str = ""
    # Largest feed read, in bytes; a bigger one fails the check.
    rss_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    # Facebook Marketplace in a headless Chromium (the `facebook` extra); off without a browser.
    facebook_base_url: str = "https://www.facebook.com"
    # Empty = Debian's /usr/bin/chromium (or chromium on PATH) when present.
    facebook_browser_path: str = ""
    # A Playwright storage-state file with a logged-in session (`marketmon facebook login`).
    facebook_storage_state_path: str = ""
    facebook_max_scrolls: int = Field(default=3, ge=0, le=20)
    facebook_timeout_s: float = Field(default=60.0, gt=0, le=600)
    facebook_requests_per_minute: int = Field(default=2, ge=1, le=60)
    facebook_concurrency: int = Field(default=1, ge=1, le=4)
    # More Chromium flags, as a JSON list, e.g. ["--proxy-server=http://proxy:3128"].
    facebook_browser_args: list[str] = Field(default_factory=list)

    # --- alert providers ---
    sendgrid_api_key: SecretStr = SecretStr("")
    sendgrid_base_url: str = "https://api.sendgrid.com"
    # smtp://user:pass@host:587 (STARTTLS when offered) or smtps://...:465 (TLS); used when
    # no SendGrid key is set.
    smtp_url: SecretStr = SecretStr("")
    email_from_address: str = "alerts@localhost"
    email_from_name: str = "Marketplace Monitor"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=60)

    # --- alert delivery ---
    # Seconds before attempt 1, 2, ... (Standard Webhooks schedule); its length is the
    # number of attempts before an alert is given up as failed.
    alert_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=1,
    )
    # A claimed alert returns to the queue when its worker has not finished within this.
    alert_lease_s: float = Field(default=120.0, ge=10, le=3600)
    # Deliveries one process runs at once. A process killed mid-send can repeat at most
    # this many (receivers drop repeats by webhook-id / Message-ID).
    alert_delivery_concurrency: int = Field(default=10, ge=1, le=100)
    # Seconds between two outbox sweeps (re-enqueue due and abandoned alerts).
    alert_sweep_interval_s: float = Field(default=30.0, ge=1, le=3600)
    # A digest lists at most this many listings, then "and N more".
    alert_digest_max_listings: int = Field(default=10, ge=1, le=100)
    digest_daily_hour: int = Field(default=8, ge=0, le=23)
    alert_channel_pause_s: float = Field(default=600.0, ge=1.0, le=86_400.0)

    # --- billing ---
    stripe_secret_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    # Stripe API base URL (the stripe library's api_base); tests point it at a local fake.
    stripe_api_base: str = "https://api.stripe.com"
    stripe_price_starter: str = ""
    stripe_price_pro: str = ""
    stripe_price_business: str = ""
    billing_success_url: str = "http://localhost:8000/billing/success"
    billing_cancel_url: str = "http://localhost:8000/billing/cancel"
    billing_portal_return_url: str = "http://localhost:8000/billing"
    # The plan of new accounts. auto: BUSINESS while Stripe is not configured (a self-hosted
    # server holds nobody to the free tier's limits), FREE once it is (people upgrade).
    default_plan: Literal["auto", "free", "starter", "pro", "business"] = "auto"

    # --- data ---
    load_templates_on_startup: bool = True
    # Listings nobody saved are deleted this many days after they were last seen.
    listing_retention_days: int = Field(default=30, ge=1, le=3650)

    # --- monitoring engine ---
    # Run the scheduler inside the API process (embedded mode). Unset: on when no broker is
    # configured, off when Celery workers do the work.
    embedded_worker: bool | None = None
    embedded_tick_s: float = Field(default=5.0, gt=0, le=300)
    # Seconds between two beat ticks that claim due searches (distributed mode).
    scheduler_tick_s: float = Field(default=10.0, ge=1, le=300)
    # Seconds a claimed search waits for its check before a later tick claims it again (its
    # task was lost with the broker, or its worker died). Keep it above the task time limit.
    check_lease_s: float = Field(default=180.0, ge=5, le=3600)
    demo_marketplace_enabled: bool = True
    # Seconds between two new demo listings of a query: short, so newcomers see alerts soon
    # (at most half of FIRST_FOLLOW_UP_S: a new search's second check then alerts).
    demo_listing_interval_s: float = Field(default=15.0, gt=0)
    fetch_cache_ttl_s: float = Field(default=10.0, ge=0, le=3600)
    # Seconds from a search's first check to its second, whatever its frequency: a new
    # search shows it works, and alerts what was listed meanwhile, within a minute.
    first_follow_up_s: float = Field(default=30.0, ge=1, le=86_400)
    check_concurrency: int = Field(default=20, ge=1, le=200)
    # Groups (upstream queries) in one Celery check task, checked concurrently by its worker.
    check_groups_per_task: int = Field(default=20, ge=1, le=200)

    # --- outbound URLs ---
    # Tests and local development only: lets user URLs point at 127.0.0.1 (any port).
    # ALLOW_PRIVATE_WEBHOOK_URLS is accepted as another name for it.
    ssrf_allow_loopback: bool = Field(
        default=False,
        validation_alias=AliasChoices("ssrf_allow_loopback", "allow_private_webhook_urls"),
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept plain URLs (postgresql://, sqlite:///) and pick the async driver."""
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgresql+psycopg2://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @field_validator("embedded_worker", mode="before")
    @classmethod
    def _blank_is_automatic(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("marketplaces_enabled", mode="before")
    @classmethod
    def _split_marketplaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip().lower() for name in value.split(",") if name.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.debug:
            return self
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET_KEY or len(secret.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigurationError(
                f"DEBUG=False needs a random SECRET_KEY of at least {MIN_SECRET_KEY_BYTES} bytes "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if self.ssrf_allow_loopback:
            raise ConfigurationError(
                "DEBUG=False with SSRF_ALLOW_LOOPBACK=true: that setting is for tests only"
            )
        if self.is_sqlite and not self.allow_sqlite_in_production:
            raise ConfigurationError(
                "DEBUG=False with SQLite: use PostgreSQL, or set ALLOW_SQLITE_IN_PRODUCTION=true"
            )
        if "*" in self.cors_origins:
            raise ConfigurationError(
                "DEBUG=False with CORS_ORIGINS=*: list the browser origins allowed to call the API"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def logs_as_json(self) -> bool:
        return self.log_format == "json" or (self.log_format == "auto" and not self.debug)

    @property
    def runs_embedded_worker(self) -> bool:
        return self.embedded_worker if self.embedded_worker is not None else not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
