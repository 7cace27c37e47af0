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
from app.alerts.delivery import DeliveryRuntime
from app.api.listing_shortcut import ServedRequests
from app.config import Settings
from app.db import session_scope
from app.errors import AuthenticationFailed, PermissionDenied
from app.models import User
from app.monitoring.fetch import MonitoringRuntime
from app.security import ssrf, tokens
from app.security.throttle import AuthThrottle
from app.security.tokens import InvalidToken, TokenPolicy
from app.services import listing_pages
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
    user's credentials version when it was issued."""

    subject: uuid.UUID
    expires_at: int
    credentials_version: int


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
    """The active user named by a valid access token; 401 otherwise. Their id (and the
    search the path names, if any) goes on every later log line of the request."""
    access = _access_token(policy, token)
    user = await session.get(User, access.subject)
    if user is None or not user.is_active or user.credentials_version != access.credentials_version:
        raise AuthenticationFailed("Invalid or expired token")
    logs.bind_caller(user.id, request.path_params.get("search_id"))
    return user


CurrentUser = Annotated[User, Depends(get_current_user, scope="function")]


async def get_current_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise PermissionDenied("Administrator access required")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin, scope="function")]


async def get_listing_pages(request: Request) -> PageCache:
    """This process's cache of GET /listings/ pages (async: no thread hop, see above)."""
    pages: PageCache = request.app.state.listing_pages
    return pages


ListingPagesDep = Annotated[PageCache, Depends(get_listing_pages)]


async def get_access_token(policy: TokenPolicyDep, token: TokenDep) -> AccessToken:
    return _access_token(policy, token)


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


def get_monitoring_runtime(request: Request) -> MonitoringRuntime:
    runtime: MonitoringRuntime = request.app.state.monitoring_runtime
    return runtime


MonitoringDep = Annotated[MonitoringRuntime, Depends(get_monitoring_runtime)]


def get_delivery_runtime(request: Request) -> DeliveryRuntime:
    runtime: DeliveryRuntime = request.app.state.delivery_runtime
    return runtime


DeliveryDep = Annotated[DeliveryRuntime, Depends(get_delivery_runtime)]
