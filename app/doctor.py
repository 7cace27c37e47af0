"""What `marketmon doctor` checks, in the order a broken install is usually mended: the
database (reachable, migrated), Redis, the Celery broker, each marketplace (credentials set
and, where the marketplace can say, accepted) and each alert channel (configured).

Every check returns findings instead of raising, so one run lists every problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import httpx
from sqlalchemy.exc import SQLAlchemyError

from app import db
from app.alerts.channels.registry import build_channels
from app.config import Settings
from app.marketplaces.base import MarketplaceError, RateLimited
from app.marketplaces.registry import ADAPTERS, build_adapters, close_adapters
from app.security import ssrf
from app.services import health

CHECK_TIMEOUT_S = 10.0
# What to set when a marketplace or channel is not configured.
MARKETPLACE_SETTINGS = {"ebay": "EBAY_APP_ID and EBAY_CERT_ID"}
CHANNEL_SETTINGS = {
    "email": "SENDGRID_API_KEY, or SMTP_URL",
    "sms": "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER",
}
DEFAULT_FROM_ADDRESS = "alerts@localhost"


class Level(StrEnum):
    OK = "ok"
    OFF = "off"  # not used by this install, which is fine
    WARN = "warn"  # works, but something users may want is missing
    FAIL = "FAIL"  # required and broken: the command exits 1


@dataclass(frozen=True)
class Finding:
    subject: str
    level: Level
    detail: str


@runtime_checkable
class VerifiesCredentials(Protocol):
    """A marketplace that can check its credentials with one cheap call (eBay: a token)."""

    async def verify_credentials(self) -> None: ...


async def diagnose(
    settings: Settings, *, head_revision: str, show_url: Callable[[str], str]
) -> list[Finding]:
    """Every finding, in order; `show_url` masks passwords in the URLs it mentions."""
    findings = [await _database(settings, head_revision, show_url)]
    findings.append(await _redis(settings, show_url))
    findings.append(await _broker(settings, show_url))
    async with httpx.AsyncClient(
        timeout=CHECK_TIMEOUT_S, follow_redirects=False, trust_env=False
    ) as client:
        findings += await _marketplaces(client, settings)
        findings += _channels(client, settings)
    return findings


async def _database(
    settings: Settings, head_revision: str, show_url: Callable[[str], str]
) -> Finding:
    url = show_url(settings.database_url)
    engine = db.engine_from_settings(settings)
    try:
        reachable = await health.check_database(engine)
        if reachable != "ok":
            hint = "run `marketmon migrate` to create it" if settings.is_sqlite else "is it up?"
            return Finding("database", Level.FAIL, f"{url}: {reachable}; {hint}")
        revision = await health.schema_revision(engine)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return Finding("database", Level.FAIL, f"{url}: {type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    if revision is None:
        return Finding("database", Level.FAIL, f"{url}: not migrated; run `marketmon migrate`")
    if revision != head_revision:
        return Finding(
            "database",
            Level.FAIL,
            f"{url}: at revision {revision}, this version needs {head_revision}; "
            "run `marketmon migrate`",
        )
    return Finding("database", Level.OK, f"{url}: reachable, schema up to date ({revision})")


async def _redis(settings: Settings, show_url: Callable[[str], str]) -> Finding:
    if not settings.redis_url:
        return Finding(
            "redis", Level.OFF, "REDIS_URL not set: caches and limits stay in each process"
        )
    url = show_url(settings.redis_url)
    status = await health.check_broker(settings.redis_url)
    if status != "ok":
        return Finding("redis", Level.FAIL, f"{url}: {status}. Is Redis running at that address?")
    return Finding("redis", Level.OK, f"{url}: answers")


async def _broker(settings: Settings, show_url: Callable[[str], str]) -> Finding:
    if not settings.broker_url:
        return Finding(
            "broker", Level.OFF, "no broker: the API process does the background work (embedded)"
        )
    url = show_url(settings.broker_url)
    status = await health.check_broker(settings.broker_url)
    if status != "ok":
        return Finding("broker", Level.FAIL, f"{url}: {status}; Celery workers cannot get work")
    return Finding("broker", Level.OK, f"{url}: answers")


async def _marketplaces(client: httpx.AsyncClient, settings: Settings) -> list[Finding]:
    adapters = build_adapters(client, settings)
    findings: list[Finding] = []
    try:
        for name in ADAPTERS:
            subject = f"marketplace {name}"
            adapter = adapters.get(name)
            if adapter is None:
                findings.append(Finding(subject, Level.OFF, "switched off in the settings"))
            elif not adapter.is_configured():
                needed = MARKETPLACE_SETTINGS.get(name, f"its {name.upper()}_* settings")
                findings.append(
                    Finding(subject, Level.WARN, f"not configured: set {needed} to check it")
                )
            elif isinstance(adapter, VerifiesCredentials):
                findings.append(await _verify(subject, adapter))
            else:
                findings.append(Finding(subject, Level.OK, "ready (no credentials needed)"))
    finally:
        await close_adapters(adapters.values())
    return findings


async def _verify(subject: str, adapter: VerifiesCredentials) -> Finding:
    try:
        await adapter.verify_credentials()
    except RateLimited:
        return Finding(subject, Level.WARN, "credentials not checked: rate limited, try later")
    except MarketplaceError as exc:
        return Finding(subject, Level.FAIL, f"credentials not accepted: {exc}")
    return Finding(subject, Level.OK, "credentials accepted")


def _channels(client: httpx.AsyncClient, settings: Settings) -> list[Finding]:
    findings = []
    for name, channel in build_channels(client, settings, ssrf.system_resolver).items():
        subject = f"channel {name}"
        if not channel.is_configured():
            needed = CHANNEL_SETTINGS.get(name, "its settings")
            findings.append(
                Finding(subject, Level.WARN, f"not configured: set {needed}; its alerts fail")
            )
        elif name == "email" and settings.email_from_address == DEFAULT_FROM_ADDRESS:
            findings.append(
                Finding(
                    subject,
                    Level.WARN,
                    f"EMAIL_FROM_ADDRESS is {DEFAULT_FROM_ADDRESS}; providers refuse such mail",
                )
            )
        else:
            findings.append(Finding(subject, Level.OK, "configured"))
    return findings
