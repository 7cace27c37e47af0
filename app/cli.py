"""`marketmon`: run the service and its workers, migrate the database, load templates,
manage admins, check a search by hand, and diagnose an install.

Every command reads the same settings as the API (environment variables, then `.env` in
the current directory); with neither, it runs in embedded mode on SQLite under ./data.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
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

from app import db, logs
from app.config import DEFAULT_SECRET_KEY, ConfigurationError, Settings
from app.models import Plan, Search, SearchTemplate, User
from app.schemas.auth import RegisterIn
from app.services import accounts, billing, plans
from app.services import templates as template_service

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD_ENV = "MARKETMON_ADMIN_PASSWORD"
# Names that mark a plain-string setting as a secret too, so a new field is masked by default.
SECRET_NAME_PARTS = ("secret", "password", "token", "key")
MASK = "********"
# Seconds requests in flight get to finish when the API is asked to stop.
GRACEFUL_SHUTDOWN_S = 30

audit_logger = logging.getLogger("app.audit")

cli = typer.Typer(
    name="marketmon",
    help="Marketplace Monitor: watch marketplaces for new listings matching saved searches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped at 100 columns: let --help re-flow their paragraphs.
    rich_markup_mode="markdown",
)

T = TypeVar("T")


@cli.callback()
def _configure_logging() -> None:
    # Broken settings are reported by the command itself; log readably meanwhile.
    try:
        settings = Settings()
    except (ConfigurationError, ValidationError):
        logs.configure(json=False)
        return
    logs.configure(json=settings.logs_as_json, level=settings.log_level)


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Apply migrations, then serve the API (by default on SQLite under ./data, no broker).

    Ctrl-C or SIGTERM stops it gracefully: requests in flight finish (for up to 30 s), the
    background scheduler stops within a tick and hands back what it had claimed.
    """
    import uvicorn  # only this command needs the server

    settings = _load_settings()
    _upgrade(settings.database_url)
    typer.echo(_banner(host, port, docs=settings.api_docs_enabled))
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        reload=reload,
        reload_dirs=[str(PROJECT_ROOT / "app")] if reload else None,
        log_level=settings.log_level.lower(),
        # The app's own log format applies to uvicorn's lines too (see app/logs.py).
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
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
                session,
                email=body.email,
                password=body.password,
                full_name=None,
                plan=plans.signup_plan(settings),
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


@cli.command("verify-user")
def verify_user(
    email: Annotated[str, typer.Argument(help="Email of the account.")],
    phone: Annotated[
        bool, typer.Option("--phone", help="Mark its phone number verified too.")
    ] = False,
) -> None:
    """Mark a user's email address (and with --phone, phone number) verified, for a server
    that cannot send email or SMS yet. Audited."""
    settings = _load_settings()
    address = email.strip().lower()

    async def apply(session: AsyncSession) -> uuid.UUID:
        user = await session.scalar(select(User).where(User.email == address))
        if user is None:
            raise _Refused(f"No user with the email {address}.")
        if phone and not user.phone_number:
            raise _Refused(f"{address} has no phone number to verify.")
        user.email_verified = True
        if phone:
            user.phone_verified = True
        await session.flush()
        return user.id

    user_id = _run_in_session(settings, apply)
    audit_logger.info("verified user_id=%s phone=%s via=cli", user_id, phone)
    if phone:
        typer.echo(f"The email address and phone number of {address} are now verified.")
    else:
        typer.echo(f"The email address of {address} is now verified.")


@cli.command("config-check")
def config_check() -> None:
    """Load the settings, print them with secrets masked; exit 1 when they are unsafe."""
    settings = _load_settings()
    typer.echo(summarise(settings))
    mode = "development (DEBUG=True)" if settings.debug else "production (DEBUG=False)"
    broker = "Celery via " + mask_url(settings.broker_url) if settings.broker_url else "embedded"
    typer.echo(f"\nConfiguration OK: {mode}, background work: {broker}.")


@cli.command()
def check(
    search_id: Annotated[
        uuid.UUID, typer.Argument(metavar="SEARCH_ID", help="Id of the saved search.")
    ],
) -> None:
    """Check one saved search now, whatever its schedule, and print what was found.

    New matches and their alerts are stored as in a scheduled check; the workers (or the
    running API in embedded mode) deliver the alerts. Exits 1 when the check failed.
    """
    settings = _load_settings()
    # Imported here, like the other heavy parts: every other command starts faster.
    from app.monitoring import cycle
    from app.runtime import build_monitoring_runtime, close_monitoring_runtime

    async def go() -> tuple[Search | None, cycle.CycleReport]:
        engine = db.engine_from_settings(settings)
        runtime = build_monitoring_runtime(settings, db.create_session_factory(engine))
        try:
            async with runtime.session_factory() as session:
                search = await session.get(Search, search_id)
            if search is None:
                return None, cycle.CycleReport()
            return search, await cycle.check_searches_now(runtime, [search_id])
        finally:
            await close_monitoring_runtime(runtime)
            await engine.dispose()

    try:
        search, report = asyncio.run(go())
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"Database error on {mask_url(settings.database_url)}: {exc}")
    if search is None:
        _fail(f"No search with the id {search_id}.")
    if not report.searches:
        _fail(f"'{search.name}' was not checked: it is paused, or being checked right now.")
    typer.echo(f"Checked '{search.name}' on {', '.join(search.marketplaces)}:")
    for outcome in report.outcomes:
        if outcome.error:
            typer.echo(f"  {outcome.marketplace}: failed: {outcome.error}")
        else:
            stored = outcome.stored
            typer.echo(
                f"  {outcome.marketplace}: {outcome.listings_fetched} listings, "
                f"{stored.listings_new} new, {stored.matches_new} new matches, "
                f"{stored.alerts_created} alerts queued"
            )
    if report.errors:
        raise typer.Exit(code=1)


class WorkerQueue(StrEnum):
    monitoring = "monitoring"
    alerts = "alerts"
    all = "all"


@cli.command()
def worker(
    queue: Annotated[
        WorkerQueue,
        typer.Option(
            "--queue",
            "-Q",
            help="monitoring: checks marketplaces; alerts: delivers alerts; all: both.",
            case_sensitive=False,
        ),
    ] = WorkerQueue.all,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Worker processes (default 4 for monitoring and all, 2 for alerts).",
            show_default=False,
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level.")] = "info",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Node name, e.g. alerts@%h (default celery@%h).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a Celery worker (`celery -A app.workers.celery_app worker -Q ...`).

    SIGTERM (or one Ctrl-C) is a warm shutdown: tasks in progress finish, messages not yet
    started stay queued for another worker. Needs a broker (REDIS_URL or CELERY_BROKER_URL).
    """
    settings = _load_settings()
    if not settings.broker_url:
        typer.echo("Note: no REDIS_URL or CELERY_BROKER_URL set; using the default local Redis.")
    # Imported here: the Celery app reads the settings, which _load_settings has vetted.
    from app.workers.celery_app import ALERTS_QUEUE, MONITORING_QUEUE, celery_app

    queues = {
        WorkerQueue.monitoring: MONITORING_QUEUE,
        WorkerQueue.alerts: ALERTS_QUEUE,
        WorkerQueue.all: f"{MONITORING_QUEUE},{ALERTS_QUEUE}",
    }[queue]
    default_concurrency = 2 if queue is WorkerQueue.alerts else 4
    argv = ["worker", "-Q", queues, "-l", loglevel, "-c", str(concurrency or default_concurrency)]
    if name:
        argv += ["-n", name]
    celery_app.worker_main(argv)


@cli.command()
def beat(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level.")] = "info",
    schedule: Annotated[
        Path | None,
        typer.Option(
            "--schedule",
            "-s",
            help="Where beat keeps its schedule state (default ./celerybeat-schedule).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run Celery beat, the scheduler (`celery -A app.workers.celery_app beat`).

    Every SCHEDULER_TICK_S it has due searches claimed and checked; it also sweeps the alert
    outbox and deletes old listings. Run one (a second one does no harm: ticks are locked).
    """
    _load_settings()
    from app.workers.celery_app import celery_app  # reads the settings, vetted just now

    argv = ["beat", "-l", loglevel]
    if schedule is not None:
        argv += ["-s", str(schedule)]
    celery_app.start(argv)


@cli.command()
def doctor() -> None:
    """Check that everything this server needs answers: the database (and its migrations),
    Redis, the broker, each marketplace's credentials and each alert channel's settings.

    Prints one line per check with what is missing; exits 1 when something required is
    broken (a database, Redis or broker that does not answer, credentials refused).
    """
    settings = _load_settings()
    from app.doctor import Level, diagnose  # builds every marketplace and channel

    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    mode = "development (DEBUG=True)" if settings.debug else "production (DEBUG=False)"
    typer.echo(f"{'ok':<5} {'settings':<24} {mode}")
    findings = asyncio.run(diagnose(settings, head_revision=head or "base", show_url=mask_url))
    for finding in findings:
        typer.echo(f"{finding.level.value:<5} {finding.subject:<24} {finding.detail}")
    broken = [f for f in findings if f.level is Level.FAIL]
    if broken:
        typer.echo(f"\n{len(broken)} problem(s) to fix before this server works.", err=True)
        raise typer.Exit(code=1)
    typer.echo("\nEverything required answers.")


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


def _banner(host: str, port: int, *, docs: bool) -> str:
    """Where to point a browser: the dashboard first, then the API's docs (or the API)."""
    # A wildcard address is where the server listens, not one a browser can open.
    shown = "localhost" if host in {"0.0.0.0", "::", ""} else host
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    api = f"API docs:  {base}/api/v1/docs" if docs else f"API:       {base}/api/v1/"
    return f"Dashboard: {base}/app/\n{api}"


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
        engine = db.engine_from_settings(settings)
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


facebook_cli = typer.Typer(help="The optional Facebook Marketplace adapter.", no_args_is_help=True)
cli.add_typer(facebook_cli, name="facebook")


@facebook_cli.command("login")
def facebook_login() -> None:
    """Log in to Facebook in a visible browser and save the session to
    FACEBOOK_STORAGE_STATE_PATH, for the facebook adapter. Needs the `facebook` extra, a
    Chromium and a display. The password is typed into Facebook's page, never stored here."""
    from app.marketplaces import facebook

    settings = _load_settings()
    browser = facebook.find_browser(settings.facebook_browser_path)
    if not facebook.playwright_installed() or browser is None:
        _fail("Needs the facebook extra (pip install -e '.[facebook]') and a Chromium browser.")
    if not settings.facebook_storage_state_path:
        _fail("Set FACEBOOK_STORAGE_STATE_PATH (e.g. ./data/facebook-session.json) first.")

    def wait_for_login() -> None:
        typer.prompt("Log in in the browser window, then press Enter here", default="")

    asyncio.run(
        facebook.save_login_session(
            browser_path=browser,
            base_url=settings.facebook_base_url,
            storage_state_path=settings.facebook_storage_state_path,
            wait_for_login=wait_for_login,
        )
    )
    typer.echo(f"Session saved to {settings.facebook_storage_state_path}.")


if __name__ == "__main__":
    main()
