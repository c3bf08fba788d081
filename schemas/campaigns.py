"""Campaign rules that need no store: the lifecycle's states and what a send rate may be.

launched ──► stopped     (`stop`, or `relaunch` of it: replaced by a new campaign, once)
    └──────► completed   (the sender, when every message has a final state)
"""

from __future__ import annotations

import math
from enum import StrEnum

from smartchat.errors import InvalidSendRate


class CampaignStatus(StrEnum):
    LAUNCHED = "launched"
    STOPPED = "stopped"
    COMPLETED = "completed"


def check_send_rate(rate: float) -> float:
    """A send rate is a finite number of messages per second above 0."""
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidSendRate(rate)
    return rate
