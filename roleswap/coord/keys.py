"""Every Redis key roleswap uses, in one place.

``roleswap:<cluster>:lock``     the swap lock: a random token, always with a TTL
``roleswap:<cluster>:journal``  JSON journal of the current/last swap (no TTL: recovery needs it)
``roleswap:<cluster>:primary``  JSON {name, host, port, since, swap_id}: the published primary
``roleswap:<cluster>:events``   pub/sub channel: the primary JSON whenever it changes

The intermission pause keys are intermission's own (see intermission.protocol).
"""

from __future__ import annotations

PREFIX = "roleswap"


def lock_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:lock"


def journal_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:journal"


def primary_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:primary"


def events_channel(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:events"
