"""GTID value types: table-driven cases, including the odd ways servers print them."""

from __future__ import annotations

import pytest

from roleswap.mysql.gtid import GtidSet, MariaGtid, MariaGtidPos, errant_mariadb

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-82db-22f2-af44-d91bb0530673"
U1_UP = U1.upper()

# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("   ", ""),
        ("0-1-100", "0-1-100"),
        ("1-2-5,0-1-100", "0-1-100,1-2-5"),
        (" 0-1-100 , 1-2-5 ", "0-1-100,1-2-5"),
        ("0-1-100,\n1-2-5", "0-1-100,1-2-5"),
        ("4294967295-4294967295-18446744073709551615", "4294967295-4294967295-18446744073709551615"),
        ("10-1-1,2-1-1", "2-1-1,10-1-1"),  # numeric, not textual, domain order
    ],
)
def test_maria_parse_canonical(text: str, canonical: str) -> None:
    pos = MariaGtidPos.parse(text)
    assert str(pos) == canonical
    assert MariaGtidPos.parse(str(pos)) == pos


def test_maria_parse_none_is_empty() -> None:
    assert MariaGtidPos.parse(None).is_empty()
    assert not MariaGtidPos.parse(None)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("0-1", "0-1"),
        ("0-1-x", "0-1-x"),
        ("0-1-100,abc", "abc"),
        ("0-1-100,,1-1-1", "empty"),
        ("0-1-100,", "empty"),
        ("-1-1-1", "-1-1-1"),
        ("0-1-1-1", "0-1-1-1"),
        ("0 -1-1", "0 -1-1"),
        ("4294967296-1-1", "out of range"),
        ("0-1-18446744073709551616", "out of range"),
        ("uuid:1-5", "uuid:1-5"),
    ],
)
def test_maria_parse_rejects_naming_token(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace("-", r"\-")):
        MariaGtidPos.parse(text)


def test_maria_position_rejects_repeated_domain_but_state_allows_it() -> None:
    with pytest.raises(ValueError, match="domain 0 appears twice"):
        MariaGtidPos.parse("0-1-100,0-2-101")
    state = MariaGtidPos.parse("0-2-101,0-1-100", state=True)
    assert str(state) == "0-1-100,0-2-101"
    assert state.seq(0) == 101
    assert str(state.position()) == "0-2-101"


def test_maria_state_rejects_conflicting_pair() -> None:
    with pytest.raises(ValueError, match="two GTIDs for domain 0 server 1"):
        MariaGtidPos.parse("0-1-100,0-1-101", state=True)


def test_maria_accessors() -> None:
    pos = MariaGtidPos.parse("0-1-100,1-2-5")
    assert pos.domains == frozenset({0, 1})
    assert pos.seq(1) == 5
    assert pos.seq(7) is None
    assert len(pos) == 2
    assert list(pos) == [MariaGtid(0, 1, 100), MariaGtid(1, 2, 5)]
    assert repr(pos) == "MariaGtidPos('0-1-100,1-2-5')"
    assert hash(pos) == hash(MariaGtidPos.parse("1-2-5,0-1-100"))


@pytest.mark.parametrize(
    ("mine", "other", "expected"),
    [
        ("0-1-100", "0-1-100", True),
        ("0-1-101", "0-1-100", True),
        ("0-1-99", "0-1-100", False),
        ("0-1-100", "", True),
        ("", "0-1-1", False),
        ("", "", True),
        ("0-1-100", "1-1-1", False),  # domain missing
        ("0-1-100,1-1-1", "1-1-1", True),
        ("0-2-150", "0-1-100", True),  # seq counts, server_id does not
        ("0-1-100,1-1-5", "0-1-100,1-1-6", False),
    ],
)
def test_maria_contains(mine: str, other: str, expected: bool) -> None:
    a, b = MariaGtidPos.parse(mine), MariaGtidPos.parse(other)
    assert a.contains(b) is expected
    assert (b <= a) is expected
    assert (a >= b) is expected


def test_maria_equality_ignores_order_but_not_values() -> None:
    assert MariaGtidPos.parse("0-1-1,1-1-1") == MariaGtidPos.parse("1-1-1,0-1-1")
    assert MariaGtidPos.parse("0-1-1") != MariaGtidPos.parse("0-1-2")
    assert MariaGtidPos.parse("0-1-1") != "0-1-1"


@pytest.mark.parametrize(
    ("candidate", "primary", "errant"),
    [
        # in sync / lagging replica with log_slave_updates: nothing errant
        ("0-1-100", "0-1-100", ""),
        ("0-1-90", "0-1-100", ""),
        ("", "0-1-100", ""),
        # history from an earlier primary (server 3) known to both
        ("0-3-50,0-1-100", "0-3-50,0-1-120", ""),
        # local write on the candidate (its own server_id 2)
        ("0-1-100,0-2-101", "0-1-100", "0-2-101"),
        # local write later overtaken by the primary's seq: still errant (pair-based)
        ("0-1-100,0-2-101", "0-1-150", "0-2-101"),
        # ex-primary (2) wrote after the new primary stopped replicating from it
        ("0-2-60,0-1-100", "0-2-50,0-1-100", "0-2-60"),
        # a domain the primary never saw
        ("0-1-100,5-2-1", "0-1-100", "5-2-1"),
        # candidate ahead of the primary under the primary's own server_id
        ("0-1-101", "0-1-100", "0-1-101"),
        # primary has extra pairs: irrelevant
        ("0-1-100", "0-1-100,1-9-9", ""),
    ],
)
def test_errant_mariadb(candidate: str, primary: str, errant: str) -> None:
    result = errant_mariadb(
        MariaGtidPos.parse(candidate, state=True), MariaGtidPos.parse(primary, state=True)
    )
    assert str(result) == errant
    assert bool(result) is bool(errant)


# ---------------------------------------------------------------------------
# MySQL
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        (" \n ", ""),
        (f"{U1}:1-5", f"{U1}:1-5"),
        (f"{U1_UP}:1-5", f"{U1}:1-5"),
        (f"{U1}:7", f"{U1}:7"),
        (f"{U1}:1-5:7-9", f"{U1}:1-5:7-9"),
        (f"{U1}:7-9:1-5", f"{U1}:1-5:7-9"),
        (f"{U1}:1-5:6-9", f"{U1}:1-9"),  # adjacent merge
        (f"{U1}:1-5:3-9", f"{U1}:1-9"),  # overlap merge
        (f"{U1}:1-5:2-3", f"{U1}:1-5"),  # contained
        (f"{U1}:5:4:6", f"{U1}:4-6"),  # singles merge
        (f"{U1}:3-3", f"{U1}:3"),
        (f"{U2}:1-3,{U1}:1-5", f"{U1}:1-5,{U2}:1-3"),
        (f"{U1}:1-5,\n{U2}:1-3", f"{U1}:1-5,{U2}:1-3"),  # as MySQL prints gtid_executed
        (f"{U1}:1-3,{U1}:4-5", f"{U1}:1-5"),  # same uuid twice
        (f"  {U1} : 1-5 ", f"{U1}:1-5"),
        (f"{U1.replace('-', '')}:1", f"{U1}:1"),
        # MySQL 8.4 tags: a tag applies to the intervals that follow it
        (f"{U1}:1-5:Tag_A:1-3", f"{U1}:1-5:tag_a:1-3"),
        (f"{U1}:tag_b:2:tag_a:1:1-5", f"{U1}:tag_a:1-5:tag_b:2"),
        (f"{U1}:tag_a:1-3,{U1}:tag_a:4", f"{U1}:tag_a:1-4"),
    ],
)
def test_gtidset_parse_canonical(text: str, canonical: str) -> None:
    gs = GtidSet.parse(text)
    assert str(gs) == canonical
    assert GtidSet.parse(str(gs)) == gs


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        (U1, "without intervals"),
        (f"{U1}:", "''"),
        (f"{U1}:0", "'0'"),
        (f"{U1}:5-3", "'5-3'"),
        (f"{U1}:1-", "'1-'"),
        (f"{U1}:a-b", "'a-b'"),
        ("not-a-uuid:1-5", "'not-a-uuid'"),
        (f"{U1}:1-5,", "empty"),
        (f"{U1}:tag", "without intervals"),
        (f"{U1}:t1:t2:1", "'t2'"),
        (f"{U1}:9223372036854775808", "9223372036854775808"),
    ],
)
def test_gtidset_parse_rejects(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace("-", r"\-")):
        GtidSet.parse(text)


@pytest.mark.parametrize(
    ("a", "b", "a_minus_b", "a_or_b", "a_le_b"),
    [
        ("", "", "", "", True),
        (f"{U1}:1-10", "", f"{U1}:1-10", f"{U1}:1-10", False),
        ("", f"{U1}:1-10", "", f"{U1}:1-10", True),
        (f"{U1}:1-10", f"{U1}:1-10", "", f"{U1}:1-10", True),
        (f"{U1}:1-10", f"{U1}:3-5", f"{U1}:1-2:6-10", f"{U1}:1-10", False),
        (f"{U1}:3-5", f"{U1}:1-10", "", f"{U1}:1-10", True),
        (f"{U1}:1-10", f"{U1}:1", f"{U1}:2-10", f"{U1}:1-10", False),
        (f"{U1}:1-10", f"{U1}:10", f"{U1}:1-9", f"{U1}:1-10", False),
        (f"{U1}:1-10", f"{U1}:2:4:6-7", f"{U1}:1:3:5:8-10", f"{U1}:1-10", False),
        (f"{U1}:1-5", f"{U1}:6-9", f"{U1}:1-5", f"{U1}:1-9", False),
        (f"{U1}:1-5:20-30", f"{U1}:4-25", f"{U1}:1-3:26-30", f"{U1}:1-30", False),
        (f"{U1}:1-5", f"{U2}:1-5", f"{U1}:1-5", f"{U1}:1-5,{U2}:1-5", False),
        (f"{U1}:1-5,{U2}:1-3", f"{U1}:1-9,{U2}:1-3", "", f"{U1}:1-9,{U2}:1-3", True),
        (f"{U1}:1-5:tag_a:1", f"{U1}:1-5", f"{U1}:tag_a:1", f"{U1}:1-5:tag_a:1", False),
    ],
)
def test_gtidset_algebra(a: str, b: str, a_minus_b: str, a_or_b: str, a_le_b: bool) -> None:
    x, y = GtidSet.parse(a), GtidSet.parse(b)
    assert str(x - y) == a_minus_b
    assert str(x | y) == a_or_b
    assert str(y | x) == a_or_b
    assert x.issubset(y) is a_le_b
    assert (x <= y) is a_le_b
    assert (y >= x) is a_le_b
    assert (x - y).is_empty() is a_le_b
    # algebraic laws that must hold for any pair
    assert (x - y) | (x & y) == x
    assert ((x - y) & y).is_empty()


def test_gtidset_errant_check_shape() -> None:
    """The preflight use: what the candidate executed that the primary never had."""
    primary = GtidSet.parse(f"{U1}:1-1000")
    candidate = GtidSet.parse(f"{U1_UP}:1-990,\n{U2}:1-2")
    errant = candidate - primary
    assert str(errant) == f"{U2}:1-2"
    assert errant.count() == 2
    assert (primary - candidate).count() == 10  # what the candidate still lacks


def test_gtidset_misc() -> None:
    gs = GtidSet.parse(f"{U1}:1-5:7,{U2}:3")
    assert gs.uuids == frozenset({U1, U2})
    assert gs.intervals(U1_UP) == ((1, 5), (7, 7))
    assert gs.intervals(U2, "nope") == ()
    assert gs.count() == 7
    assert bool(gs) and not GtidSet.parse("")
    assert hash(gs) == hash(GtidSet.parse(f"{U2}:3,{U1}:7:1-5"))
    assert gs != str(gs)
    assert repr(GtidSet.parse(f"{U1}:1")) == f"GtidSet('{U1}:1')"
