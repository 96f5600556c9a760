"""GTID value types: MariaDB positions/binlog states and MySQL GTID sets.

Parsing is strict: anything that is not exactly a GTID raises ``ValueError``
naming the offending token, because a silently misread position could make a
swap wait for the wrong thing.  Whitespace and newlines (MySQL prints
``gtid_executed`` with ``",\\n"`` between UUIDs) are accepted.  Values are
immutable and hashable; ``str()`` is canonical, so two equal values print the
same and can be compared as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

# ---------------------------------------------------------------------------
# MariaDB: domain-server-seq
# ---------------------------------------------------------------------------

_MARIA_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_U32 = 2**32 - 1
_U64 = 2**64 - 1


@dataclass(frozen=True, order=True)
class MariaGtid:
    """One MariaDB GTID ``domain-server_id-seq``."""

    domain: int
    server_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"


class MariaGtidPos:
    """A MariaDB GTID position or binlog state.

    A *position* (``gtid_binlog_pos``, ``gtid_current_pos``, ``gtid_slave_pos``,
    ``Gtid_IO_Pos``) holds at most one GTID per domain.  A *binlog state*
    (``gtid_binlog_state``) holds the last GTID per (domain, server_id).  Both
    parse into this type; :meth:`parse` with ``state=False`` (the default)
    rejects a domain that appears twice, ``state=True`` only rejects a repeated
    (domain, server_id) pair.

    Where a domain has several entries (a state), the domain's position is its
    highest seq: with ``gtid_strict_mode`` seqs grow monotonically per domain.
    """

    __slots__ = ("_gtids",)

    def __init__(self, gtids: Iterable[MariaGtid] = ()) -> None:
        seen: dict[tuple[int, int], MariaGtid] = {}
        for g in gtids:
            key = (g.domain, g.server_id)
            if key in seen and seen[key] != g:
                raise ValueError(f"two GTIDs for domain {g.domain} server {g.server_id}: "
                                 f"{seen[key]} and {g}")
            seen[key] = g
        self._gtids: tuple[MariaGtid, ...] = tuple(sorted(seen.values()))

    @classmethod
    def parse(cls, text: str | None, *, state: bool = False) -> MariaGtidPos:
        """Parse ``"0-1-100,1-2-5"``; ``""``/``None`` is the empty position."""
        if text is None:
            return cls()
        gtids: list[MariaGtid] = []
        domains: set[int] = set()
        for raw in text.split(","):
            token = raw.strip()
            if not token:
                if text.strip():
                    raise ValueError(f"empty GTID in {text!r}")
                continue
            m = _MARIA_RE.match(token)
            if not m:
                raise ValueError(f"bad MariaDB GTID {token!r} (expected domain-server_id-seq)")
            domain, server_id, seq = (int(x) for x in m.groups())
            if domain > _U32 or server_id > _U32 or seq > _U64:
                raise ValueError(f"bad MariaDB GTID {token!r} (number out of range)")
            if not state and domain in domains:
                raise ValueError(
                    f"domain {domain} appears twice in position {text!r} "
                    "(a binlog state? parse it with state=True)"
                )
            domains.add(domain)
            gtids.append(MariaGtid(domain, server_id, seq))
        return cls(gtids)

    # -- access -------------------------------------------------------------
    @property
    def gtids(self) -> tuple[MariaGtid, ...]:
        return self._gtids

    @property
    def domains(self) -> frozenset[int]:
        return frozenset(g.domain for g in self._gtids)

    def seq(self, domain: int) -> int | None:
        """The highest seq reached in ``domain`` (``None`` if the domain is unknown)."""
        seqs = [g.seq for g in self._gtids if g.domain == domain]
        return max(seqs) if seqs else None

    def position(self) -> MariaGtidPos:
        """One GTID per domain (the highest seq): a state reduced to a position."""
        best: dict[int, MariaGtid] = {}
        for g in self._gtids:
            if g.domain not in best or g.seq > best[g.domain].seq:
                best[g.domain] = g
        return MariaGtidPos(best.values())

    def is_empty(self) -> bool:
        return not self._gtids

    # -- comparison -----------------------------------------------------------
    def contains(self, other: MariaGtidPos) -> bool:
        """True when every domain of ``other`` is reached here (seq >= other's)."""
        for d in other.domains:
            mine, theirs = self.seq(d), other.seq(d)
            if mine is None or theirs is None or mine < theirs:
                return False
        return True

    def __le__(self, other: MariaGtidPos) -> bool:
        return other.contains(self)

    def __ge__(self, other: MariaGtidPos) -> bool:
        return self.contains(other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MariaGtidPos) and self._gtids == other._gtids

    def __hash__(self) -> int:
        return hash(self._gtids)

    def __bool__(self) -> bool:
        return bool(self._gtids)

    def __iter__(self) -> Iterator[MariaGtid]:
        return iter(self._gtids)

    def __len__(self) -> int:
        return len(self._gtids)

    def __str__(self) -> str:
        return ",".join(str(g) for g in self._gtids)

    def __repr__(self) -> str:
        return f"MariaGtidPos({str(self)!r})"


def errant_mariadb(candidate_state: MariaGtidPos, primary_state: MariaGtidPos) -> MariaGtidPos:
    """GTIDs in ``candidate_state`` that the primary never had (empty if none).

    Both arguments are ``gtid_binlog_state`` values (one GTID per (domain,
    server_id)).  A replica with ``log_slave_updates`` re-logs the primary's
    transactions under their original server_id, so those pairs also appear
    in the primary's state with a seq at least as high and are not errant; a
    replica that merely lags has a *lower* seq for the pair, also not errant.
    Errant is: a (domain, server_id) pair the primary has no entry for (a
    local write, or a write on a server the primary never replicated), or a
    higher seq than the primary has for the pair (e.g. an ex-primary that
    wrote locally after demotion).

    Comparing by pair rather than by domain matters: under strict mode a
    local write ``0-2-101`` on a replica whose primary later wrote ``0-1-101``
    .. ``0-1-150`` has a lower seq than the primary's domain position and
    would be missed by a per-domain comparison.

    Caveat: if the primary ran without ``log_slave_updates`` while it was
    itself a replica, its state lacks pairs it applied but did not log, and
    those show up here as false positives; check them by hand.
    """
    known = {(g.domain, g.server_id): g.seq for g in primary_state}
    return MariaGtidPos(
        g for g in candidate_state
        if (g.domain, g.server_id) not in known or g.seq > known[(g.domain, g.server_id)]
    )


# ---------------------------------------------------------------------------
# MySQL: uuid[:tag]:interval[:interval]...
# ---------------------------------------------------------------------------

_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_TAG_RE = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
_INTERVAL_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_GNO_MAX = 2**63 - 1

Interval = tuple[int, int]  # closed [start, end], start >= 1
Key = tuple[str, str]  # (uuid lowercase with dashes, tag lowercase or "")


def _norm_uuid(text: str) -> str:
    u = text.strip().lower()
    if not _UUID_RE.match(u):
        raise ValueError(f"bad server UUID {text.strip()!r} in GTID set")
    u = u.replace("-", "")
    return f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"


def _merge(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:  # overlapping or adjacent
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)


def _subtract(mine: tuple[Interval, ...], theirs: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for start, end in mine:
        cur = start
        for ts, te in theirs:
            if te < cur or ts > end:
                continue
            if ts > cur:
                out.append((cur, ts - 1))
            cur = max(cur, te + 1)
            if cur > end:
                break
        if cur <= end:
            out.append((cur, end))
    return tuple(out)


class GtidSet:
    """A MySQL GTID set such as ``3e11fa47-...:1-5:7-9,4f...:1-3``.

    UUIDs are case-insensitive (stored lowercase), intervals are merged
    (``1-5:6-9`` is ``1-9``).  MySQL 8.4 tagged GTIDs
    (``uuid:tag:1-5``; a tag applies to the intervals that follow it) are
    supported best effort; tags are lowercased like MySQL does.
    """

    __slots__ = ("_sets",)

    def __init__(self, sets: Mapping[Key, Iterable[Interval]] | None = None) -> None:
        merged: dict[Key, tuple[Interval, ...]] = {}
        for key, ivs in (sets or {}).items():
            m = _merge(ivs)
            if m:
                merged[key] = m
        self._sets: dict[Key, tuple[Interval, ...]] = dict(sorted(merged.items()))

    @classmethod
    def parse(cls, text: str | None) -> GtidSet:
        """Parse a GTID set as MySQL prints it; ``""``/``None`` is the empty set."""
        if text is None:
            return cls()
        sets: dict[Key, list[Interval]] = {}
        body = text.strip()
        if not body:
            return cls()
        for raw in body.split(","):
            chunk = raw.strip()
            if not chunk:
                raise ValueError(f"empty UUID set in GTID set {text!r}")
            parts = [p.strip() for p in chunk.split(":")]
            uuid = _norm_uuid(parts[0])
            if len(parts) < 2:
                raise ValueError(f"UUID {parts[0]!r} without intervals in GTID set")
            tag = ""
            expect_interval = False  # a tag must be followed by an interval
            for token in parts[1:]:
                m = _INTERVAL_RE.match(token)
                if m:
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else start
                    if start < 1 or end < start or end > _GNO_MAX:
                        raise ValueError(f"bad GTID interval {token!r} for {uuid}")
                    sets.setdefault((uuid, tag), []).append((start, end))
                    expect_interval = False
                    continue
                lowered = token.lower()
                if _TAG_RE.match(lowered) and not expect_interval:
                    tag = lowered
                    expect_interval = True
                    continue
                raise ValueError(f"bad GTID interval or tag {token!r} for {uuid}")
            if expect_interval:
                raise ValueError(f"GTID tag {tag!r} without intervals for {uuid}")
        return cls(sets)

    # -- set algebra ----------------------------------------------------------
    def is_empty(self) -> bool:
        return not self._sets

    def __bool__(self) -> bool:
        return bool(self._sets)

    def __or__(self, other: GtidSet) -> GtidSet:
        keys = set(self._sets) | set(other._sets)
        return GtidSet({k: self._sets.get(k, ()) + other._sets.get(k, ()) for k in keys})

    def __sub__(self, other: GtidSet) -> GtidSet:
        return GtidSet({
            k: _subtract(ivs, other._sets.get(k, ())) for k, ivs in self._sets.items()
        })

    def __and__(self, other: GtidSet) -> GtidSet:
        return self - (self - other)

    def issubset(self, other: GtidSet) -> bool:
        return (self - other).is_empty()

    def __le__(self, other: GtidSet) -> bool:
        return self.issubset(other)

    def __ge__(self, other: GtidSet) -> bool:
        return other.issubset(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GtidSet) and self._sets == other._sets

    def __hash__(self) -> int:
        return hash(tuple(self._sets.items()))

    def count(self) -> int:
        """Number of transactions in the set (e.g. how many a replica is missing)."""
        return sum(e - s + 1 for ivs in self._sets.values() for s, e in ivs)

    @property
    def uuids(self) -> frozenset[str]:
        return frozenset(u for u, _ in self._sets)

    def intervals(self, uuid: str, tag: str = "") -> tuple[Interval, ...]:
        return self._sets.get((_norm_uuid(uuid), tag.lower()), ())

    def __str__(self) -> str:
        by_uuid: dict[str, list[str]] = {}
        for (uuid, tag), ivs in self._sets.items():  # sorted: untagged ("") first
            parts = by_uuid.setdefault(uuid, [uuid])
            if tag:
                parts.append(tag)
            parts.extend(f"{s}-{e}" if e > s else str(s) for s, e in ivs)
        return ",".join(":".join(p) for p in by_uuid.values())

    def __repr__(self) -> str:
        return f"GtidSet({str(self)!r})"


# ---------------------------------------------------------------------------
# Both flavors
# ---------------------------------------------------------------------------

GtidValue = MariaGtidPos | GtidSet


def extra_gtids(have: GtidValue, lack: GtidValue) -> GtidValue:
    """Transactions ``have`` holds that ``lack`` does not (empty when none): one question
    for both flavors, asked of the values :meth:`Dialect.parse_gtid_state` returns.

    MariaDB: two ``gtid_binlog_state`` values compared per (domain, server_id) (see
    :func:`errant_mariadb`).  MySQL: ``gtid_executed`` set difference.  Mixing the
    two types is a programming error (``TypeError``).
    """
    if isinstance(have, MariaGtidPos) and isinstance(lack, MariaGtidPos):
        return errant_mariadb(have, lack)
    if isinstance(have, GtidSet) and isinstance(lack, GtidSet):
        return have - lack
    raise TypeError(f"cannot compare {type(have).__name__} with {type(lack).__name__}")


def canonical_gtid_text(text: str | None) -> str:
    """A GTID position or set as printed text, canonical whatever the flavor: MySQL sets
    (``uuid:...``, possibly ``",\\n"``-separated) via :class:`GtidSet`, MariaDB
    positions via :class:`MariaGtidPos`; text that is neither keeps its entries, one
    line, whitespace dropped (a value is never hidden because it did not parse)."""
    body = (text or "").strip()
    if not body:
        return ""
    try:
        value: GtidValue = GtidSet.parse(body) if ":" in body else MariaGtidPos.parse(body, state=True)
    except ValueError:
        return ",".join("".join(part.split()) for part in body.split(","))
    return str(value)
