"""An outbound message's status, and the only moves it may make.

    queued ──► sending ──► sent ──► delivered
       │          │          └────► undelivered
       └──────────┴─────────────────► failed

Statuses only move forward: status callbacks arrive late and out of order, so a late `sent`
never overwrites `delivered`, and `delivered`, `undelivered` and `failed` are final. `sending`
marks a request that may be in flight at the aggregator: after a crash those are the messages
to reconcile with the aggregator before sending again (never send them blindly a second time).
The names are Twilio's, so a status callback's `MessageStatus` maps one to one (Twilio's own
`accepted`, `scheduled`, `read`... map through `from_provider`).
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Position along the lifecycle: a change applies only to a message of lower rank."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        return self in FINAL

    def can_move_to(self, new: MessageStatus) -> bool:
        return not self.is_final and new.rank > self.rank

    @classmethod
    def from_provider(cls, status: str) -> MessageStatus | None:
        """A Twilio status as ours; None for one that says nothing new (`receiving`...)."""
        return _PROVIDER.get(status.strip().lower())


_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.UNDELIVERED: 3,
    MessageStatus.FAILED: 3,
}
FINAL = frozenset({MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED})
_PROVIDER: dict[str, MessageStatus] = {
    **{s.value: s for s in MessageStatus},
    "accepted": MessageStatus.SENDING,
    "scheduled": MessageStatus.SENDING,
    "read": MessageStatus.DELIVERED,
}
