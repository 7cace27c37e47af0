"""The in-app feed: the outbox row is the message, so delivering it is only marking it."""

from __future__ import annotations

from app.alerts.channels.base import AlertMessage, DeliveryResult, Recipient


class InAppChannel:
    name = "in_app"

    def is_configured(self) -> bool:
        return True

    def can_reach(self, recipient: Recipient) -> bool:
        return True

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        return DeliveryResult.delivered()
