"""`marketmon`: run the service, migrate the database, load templates, manage admins.

Every command reads the same settings as the API (environment variables, then `.env` in
the current directory); with neither, it runs in embedded mode on SQLite under ./data.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer
from alembic.command import upgrade as alembic_upgrade
from alembic.config import Config
from alembic.script import ScriptDirectory
from pydantic import SecretStr, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app import db
from app.config import DEFAULT_SECRET_KEY, ConfigurationError, Settings
from app.models import Plan, SearchTemplate, User
from app.schemas.auth import RegisterIn
from app.services import accounts, billing
from app.services import templates as template_service

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD_ENV = "MARKETMON_ADMIN_PASSWORD"
# Names that mark a plain-string setting as a secret too, so a new field is masked by default.
SECRET_NAME_PARTS = ("secret", "password", "token", "key")
MASK = "********"

audit_logger = logging.getLogger("app.audit")

cli = typer.Typer(
    name="marketmon",
    help="Marketplace Monitor: watch marketplaces for new listings matching saved searches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")


@cli.callback()
def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stderr,
    )


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Apply migrations, then serve the API (by default on SQLite under ./data, no broker)."""
    import uvicorn  # only this command needs the server

    settings = _load_settings()
    _upgrade(settings.database_url)
    typer.echo(f"API on http://{host}:{port}  (docs: http://{host}:{port}/api/v1/docs)")
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        reload=reload,
        reload_dirs=[str(PROJECT_ROOT / "app")] if reload else None,
        log_level="info",
    )


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest migration (alembic upgrade head)."""
    settings = _load_settings()
    revision = _upgrade(settings.database_url)
    typer.echo(f"Database {mask_url(settings.database_url)} is at revision {revision}.")


@cli.command()
def seed() -> None:
    """Insert or update the built-in search templates (safe to run again)."""
    settings = _load_settings()

    async def load(session: AsyncSession) -> int:
        await template_service.load_builtin_templates(session)
        await session.flush()
        count = await session.scalar(select(func.count()).select_from(SearchTemplate))
        return int(count or 0)

    count = _run_in_session(settings, load)
    typer.echo(f"Built-in templates loaded; {count} templates in the database.")


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="Email of the account to make an administrator.")],
    password: Annotated[
        str | None,
        typer.Option(
            envvar=ADMIN_PASSWORD_ENV,
            help="Password when the account is created (asked for when omitted).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Make an existing user an administrator, or create an administrator account."""
    settings = _load_settings()

    def ask_password() -> str:
        if password is not None:
            return password
        answer: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return answer

    async def grant(session: AsyncSession) -> tuple[User, bool]:
        address = email.strip().lower()
        user = await session.scalar(select(User).where(User.email == address))
        created = user is None
        if user is None:
            try:
                body = RegisterIn(email=address, password=ask_password())
            except ValidationError as exc:
                raise _Refused(_validation_message(exc)) from exc
            user = await accounts.register(
                session, email=body.email, password=body.password, full_name=None
            )
        user.is_admin = True
        await session.flush()
        return user, created

    user, created = _run_in_session(settings, grant)
    audit_logger.info(
        "admin role granted user_id=%s email=%s created=%s via=cli", user.id, user.email, created
    )
    action = "Created administrator" if created else "Granted administrator role to"
    typer.echo(f"{action} {user.email} ({user.id}).")
    if not user.is_active:
        typer.echo("Note: this account is deactivated and cannot log in until reactivated.")


@cli.command("set-plan")
def set_plan(
    email: Annotated[str, typer.Argument(help="Email of the account.")],
    plan: Annotated[Plan, typer.Argument(help="The plan to put it on.", case_sensitive=False)],
    reason: Annotated[
        str | None, typer.Option(help="Why (kept in the audit log).", show_default=False)
    ] = None,
) -> None:
    """Set a user's plan by hand (support cases), audited. A lower plan pauses the newest
    searches over its limits; nothing is deleted. Stripe events override it later."""
    settings = _load_settings()
    address = email.strip().lower()

    async def apply(session: AsyncSession) -> billing.PlanChange:
        user = await session.scalar(select(User).where(User.email == address))
        if user is None:
            raise _Refused(f"No user with the email {address}.")
        return await billing.admin_set_plan(
            session, user.id, plan, actor_id=None, source=billing.PlanSource.CLI, reason=reason
        )

    change = _run_in_session(settings, apply)
    if not change.changed:
        typer.echo(f"{address} is already on the {plan.name} plan; nothing changed.")
        return
    audit_logger.info(
        "plan set user_id=%s from=%s to=%s via=cli", change.user_id, change.previous_plan, plan
    )
    typer.echo(f"{address} is now on the {plan.name} plan (was {change.previous_plan.upper()}).")
    if change.paused:
        typer.echo(f"Paused {len(change.paused)} search(es) over the plan's limit.")
    if change.adjusted:
        typer.echo(f"Reduced marketplaces or frequency of {len(change.adjusted)} search(es).")


@cli.command("config-check")
def config_check() -> None:
    """Load the settings, print them with secrets masked; exit 1 when they are unsafe."""
    settings = _load_settings()
    typer.echo(summarise(settings))
    mode = "development (DEBUG=True)" if settings.debug else "production (DEBUG=False)"
    broker = "Celery via " + mask_url(settings.broker_url) if settings.broker_url else "embedded"
    typer.echo(f"\nConfiguration OK: {mode}, background work: {broker}.")


def main() -> None:
    """Console-script entry point (`marketmon`)."""
    cli(prog_name="marketmon")


def summarise(settings: Settings) -> str:
    """One `NAME = value` line per setting, secrets and URL passwords masked."""
    lines = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        lines.append(f"{name.upper():<32} = {display_value(name, value)}")
    return "\n".join(lines)


def display_value(name: str, value: object) -> str:
    if isinstance(value, SecretStr):
        if value.get_secret_value() == DEFAULT_SECRET_KEY:
            return "(the shipped default: set a random one before production)"
        return MASK if value.get_secret_value() else "(not set)"
    if isinstance(value, str):
        if not value:
            return "(not set)"
        if "://" in value:
            return mask_url(value)
        if any(part in name.lower() for part in SECRET_NAME_PARTS):
            return MASK
        return value
    return str(value)


def mask_url(url: str) -> str:
    """The URL with any password replaced, for logs and summaries."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username}:{MASK}" if parts.username else f":{MASK}"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


class _Refused(Exception):
    """A command cannot go on; the message is shown to the operator as is."""


def _load_settings() -> Settings:
    try:
        return Settings()
    except (ConfigurationError, ValidationError) as exc:
        _fail(f"Configuration error: {exc}")


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code=1)


def alembic_config(database_url: str) -> Config:
    """The project's Alembic config with the URL passed in (env.py prefers it to settings)."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    # Keep this CLI's log format; Alembic's own file config would replace it.
    config.attributes["configure_logger"] = False
    return config


def _upgrade(database_url: str) -> str:
    config = alembic_config(database_url)
    logging.getLogger("alembic").setLevel(logging.INFO)
    try:
        alembic_upgrade(config, "head")
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"Migration failed on {mask_url(database_url)}: {exc}")
    return ScriptDirectory.from_config(config).get_current_head() or "base"


def _run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed unit of work; database trouble exits 1 with a hint."""

    async def go() -> T:
        engine = db.create_engine(settings.database_url)
        results: list[T] = []
        try:
            # Run the generator to its end: the commit happens after the yield.
            async for session in db.session_scope(db.create_session_factory(engine)):
                results.append(await work(session))
        finally:
            await engine.dispose()
        return results[0]

    try:
        return asyncio.run(go())
    except _Refused as exc:
        _fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        _fail(
            f"Database error on {mask_url(settings.database_url)}: {exc}\n"
            "Is the database up and migrated (`marketmon migrate`)?"
        )


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


if __name__ == "__main__":
    main()
