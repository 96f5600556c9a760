"""Every Redis key roleswap uses, in one place.

``roleswap:<cluster>:lock``     the swap lock: a random token, always with a TTL
``roleswap:<cluster>:journal``  JSON journal of the current/last swap (no TTL: recovery needs it)
``roleswap:<cluster>:primary``  JSON {name, host, port, since, swap_id}: the published primary
``roleswap:<cluster>:events``   pub/sub channel: the primary JSON whenever it changes
``roleswap:<cluster>:runbook``  JSON record of the current/last maintenance runbook (no TTL,
                                like the journal: recover reads it after a crash)
``roleswap:<cluster>:runbook:alive``  "host pid" while a runbook's process lives (TTL 15 s,
                                refreshed every 5 s)

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


def runbook_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:runbook"


def runbook_alive_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:runbook:alive"
