"""Request-scoped dependencies: the database session (the request's unit of work) and the user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import logs
from app.alerts.channels.email import EmailChannel
from app.alerts.delivery import DeliveryRuntime
from app.api.listing_shortcut import ServedRequests
from app.config import Settings
from app.db import session_scope
from app.errors import AuthenticationFailed, PermissionDenied
from app.models import ApiToken, User
from app.monitoring.fetch import MonitoringRuntime
from app.security import ssrf, tokens
from app.security.throttle import AuthThrottle
from app.security.tokens import InvalidToken, TokenPolicy
from app.services import api_tokens, availability, email_links, listing_pages
from app.services.listing_pages import PageCache, PageOwner

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed after the route returns, before the response."""
    # aclosing: when the route raises, the scope is closed (rolled back, its connection back
    # in the pool) now, not whenever the garbage collector gets to the abandoned generator.
    async with aclosing(session_scope(request.app.state.session_factory)) as scope:
        async for session in scope:
            yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """For a route that may need no session at all (async: no thread hop, see below)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    return factory


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# async, though it awaits nothing: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop on every authenticated request for one attribute read.
async def get_token_policy(request: Request) -> TokenPolicy:
    policy: TokenPolicy = request.app.state.token_policy
    return policy


def get_throttle(request: Request) -> AuthThrottle:
    throttle: AuthThrottle = request.app.state.throttle
    return throttle


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TokenPolicyDep = Annotated[TokenPolicy, Depends(get_token_policy)]
ThrottleDep = Annotated[AuthThrottle, Depends(get_throttle)]


def get_resolver(request: Request) -> ssrf.Resolver:
    """How host names of user URLs are resolved (tests put a fake on app.state)."""
    resolve: ssrf.Resolver = request.app.state.resolve_host
    return resolve


ResolverDep = Annotated[ssrf.Resolver, Depends(get_resolver)]


def get_url_policy(resolve: ResolverDep, settings: SettingsDep) -> ssrf.URLPolicy:
    return ssrf.URLPolicy(
        resolve=resolve, allow_http=settings.debug, allow_loopback=settings.ssrf_allow_loopback
    )


URLPolicyDep = Annotated[ssrf.URLPolicy, Depends(get_url_policy)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


ClientIP = Annotated[str, Depends(client_ip)]


TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What a valid access token says: whose it is, until when (epoch seconds), and the
    user's credentials version when it was issued. For a personal API token: its owner,
    its expiry (END_OF_TIME for none) and the owner's current credentials version."""

    subject: uuid.UUID
    expires_at: int
    credentials_version: int
    # An API token is revoked by deleting its row, which only a database read sees.
    is_api_token: bool = False


END_OF_TIME = 253402300799  # 9999-12-31T23:59:59Z, the expiry of an API token without one

LOGIN_NEEDED = (
    "This needs a login: an API token cannot manage API tokens, change the password, "
    "log out everywhere, delete the account or administer the server"
)
READ_ONLY_TOKEN = "This API token can only read; create one with the write scope"
_READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _access_token(policy: TokenPolicy, token: str | None) -> AccessToken:
    """The claims of a valid access token; 401 for a missing or invalid token."""
    if not token:
        raise AuthenticationFailed("Not authenticated")
    try:
        claims = policy.signer.decode(token, expected_type="access")
    except InvalidToken as exc:
        raise AuthenticationFailed("Invalid or expired token") from exc
    return AccessToken(
        uuid.UUID(str(claims["sub"])),
        int(str(claims["exp"])),
        tokens.credentials_version(claims),
    )


async def get_current_user(
    request: Request, session: SessionDep, policy: TokenPolicyDep, token: TokenDep
) -> User:
    """The active user named by a valid access token or personal API token; 401
    otherwise. An API token gets 403 where a login is needed, and without the write scope
    for anything but reading. Their id (and the search the path names, if any) goes on
    every later log line of the request."""
    user, api_token = await _caller(request, session, policy, token)
    if api_token is not None:
        _check_api_token_may(request, api_token)
    return user


CurrentUser = Annotated[User, Depends(get_current_user, scope="function")]


async def get_logged_in_user(
    request: Request, session: SessionDep, policy: TokenPolicyDep, token: TokenDep
) -> User:
    """As get_current_user, but only with a login's access token: an API token gets 403,
    for what only the account's owner in person may do (managing API tokens, the
    password, sessions, deleting the account, administration), so that a leaked token can
    neither lock its owner out nor outlive a password change."""
    user, api_token = await _caller(request, session, policy, token)
    if api_token is not None:
        raise PermissionDenied(LOGIN_NEEDED)
    return user


LoggedInUser = Annotated[User, Depends(get_logged_in_user, scope="function")]


async def _caller(
    request: Request, session: AsyncSession, policy: TokenPolicy, token: str | None
) -> tuple[User, ApiToken | None]:
    """The active user the Bearer value names, and the API token when it was one."""
    api_token: ApiToken | None = None
    if token is not None and api_tokens.is_api_token(token):
        user, api_token = await api_tokens.authenticate(session, token)
    else:
        access = _access_token(policy, token)
        found = await session.get(User, access.subject)
        if (
            found is None
            or not found.is_active
            or found.credentials_version != access.credentials_version
        ):
            raise AuthenticationFailed("Invalid or expired token")
        user = found
    logs.bind_caller(user.id, request.path_params.get("search_id"))
    return user, api_token


def _check_api_token_may(request: Request, api_token: ApiToken) -> None:
    """403 unless this API token may make this request."""
    if request.method not in _READING_METHODS and not api_tokens.may_write(api_token):
        raise PermissionDenied(READ_ONLY_TOKEN)


async def get_current_admin(user: LoggedInUser) -> User:
    if not user.is_admin:
        raise PermissionDenied("Administrator access required")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin, scope="function")]


async def get_listing_pages(request: Request) -> PageCache:
    """This process's cache of GET /listings/ pages (async: no thread hop, see above)."""
    pages: PageCache = request.app.state.listing_pages
    return pages


ListingPagesDep = Annotated[PageCache, Depends(get_listing_pages)]


async def get_access_token(
    request: Request, policy: TokenPolicyDep, sessions: SessionFactoryDep, token: TokenDep
) -> AccessToken:
    """What the Bearer value says, for GET /listings/: a login's access token is read
    without the database; an API token is looked up in a unit of work of its own (the
    route opens no session)."""
    if token is None or not api_tokens.is_api_token(token):
        return _access_token(policy, token)
    async with sessions() as session:
        user, api_token = await api_tokens.authenticate(session, token)
        await session.commit()  # its last use
    _check_api_token_may(request, api_token)
    logs.bind_caller(user.id, request.path_params.get("search_id"))
    expires_at = api_token.expires_at
    return AccessToken(
        user.id,
        END_OF_TIME if expires_at is None else int(expires_at.timestamp()),
        user.credentials_version,
        is_api_token=True,
    )


AccessTokenDep = Annotated[AccessToken, Depends(get_access_token)]


async def get_page_owner(request: Request, access: AccessTokenDep) -> PageOwner:
    """The caller of GET /listings/, refused exactly as get_current_user refuses (on every
    request: a deactivated or deleted user's token stops working at once), but read as
    one column without the ORM or a transaction: a page served from the cache then costs
    one round trip to the database."""
    owner = await listing_pages.read_owner(
        request.app.state.engine, access.subject, access.credentials_version
    )
    if owner is None:
        raise AuthenticationFailed("Invalid or expired token")
    logs.bind_caller(owner.id, request.path_params.get("search_id"))
    return owner


PageOwnerDep = Annotated[PageOwner, Depends(get_page_owner)]


async def get_served_requests(request: Request) -> ServedRequests:
    """The GET /listings/ requests this process answered, for its shortcut."""
    served: ServedRequests = request.app.state.listing_shortcut.served
    return served


ServedRequestsDep = Annotated[ServedRequests, Depends(get_served_requests)]


def get_account_mailer(request: Request) -> email_links.AccountMailer:
    """Account mails (verification and reset links) go out through the email channel."""
    # No runtime before the app's lifespan has run: nothing can be sent yet.
    runtime: DeliveryRuntime | None = getattr(request.app.state, "delivery_runtime", None)
    channel = runtime.channels.get("email") if runtime is not None else None
    settings: Settings = request.app.state.settings
    return email_links.AccountMailer(
        channel=channel if isinstance(channel, EmailChannel) else None,
        public_base_url=settings.public_base_url,
    )


AccountMailerDep = Annotated[email_links.AccountMailer, Depends(get_account_mailer)]


def get_monitoring_runtime(request: Request) -> MonitoringRuntime:
    runtime: MonitoringRuntime = request.app.state.monitoring_runtime
    return runtime


MonitoringDep = Annotated[MonitoringRuntime, Depends(get_monitoring_runtime)]


def get_delivery_runtime(request: Request) -> DeliveryRuntime:
    runtime: DeliveryRuntime = request.app.state.delivery_runtime
    return runtime


DeliveryDep = Annotated[DeliveryRuntime, Depends(get_delivery_runtime)]


def get_server_setup(request: Request) -> availability.ServerSetup:
    """The marketplaces and channels this server can use, for forms and search states."""
    delivery: DeliveryRuntime | None = getattr(request.app.state, "delivery_runtime", None)
    return availability.ServerSetup(
        adapters=request.app.state.monitoring_runtime.adapters,
        channels=delivery.channels if delivery is not None else None,
    )


ServerSetupDep = Annotated[availability.ServerSetup, Depends(get_server_setup)]
