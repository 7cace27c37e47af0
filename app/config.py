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
    login_account_failure_limit: str = "5/15minutes"

    # --- HTTP ---
    # NoDecode: the env source would otherwise insist on JSON and refuse "https://a,https://b".
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

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
    # ISO country for searches whose location names none (eBay site, currency, delivery).
    default_country: str = Field(default="GB", pattern=r"^[A-Za-z]{2}$")

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
    demo_marketplace_enabled: bool = True
    demo_listing_interval_s: float = Field(default=45.0, gt=0)
    fetch_cache_ttl_s: float = Field(default=10.0, ge=0, le=3600)
    check_concurrency: int = Field(default=20, ge=1, le=200)

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

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
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
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def runs_embedded_worker(self) -> bool:
        return self.embedded_worker if self.embedded_worker is not None else not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
