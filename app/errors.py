"""Domain errors raised by services, the engine and the alerts; main.py maps them to HTTP."""


class DomainError(Exception):
    """A business rule said no. Rendered as {"detail", "code"}; `field` names the input at
    fault (rendered beside the detail, and shown on that field in forms) when there is one."""

    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class PlanLimitExceeded(DomainError):
    """The user's plan does not allow this; `field` is the setting over the limit, if one is."""

    code = "plan_limit_exceeded"


class InvalidInput(DomainError):
    """Input that passes the schema but breaks a rule only a service can check."""

    code = "invalid_input"


class AuthenticationFailed(DomainError):
    code = "not_authenticated"


class PermissionDenied(DomainError):
    code = "forbidden"


class TooManyRequests(DomainError):
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(DomainError):
    code = "service_unavailable"
