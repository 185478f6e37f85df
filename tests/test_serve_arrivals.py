"""When ``rtcheck serve`` looks at a study: settle time, and associations still open.

These drive :class:`rtcheck.serve._Arrivals` directly (no network, no pynetdicom): an
arrival ``age`` seconds ago stands for a clock that has moved on.
"""

from __future__ import annotations

import pytest

from rtcheck.serve import OPEN_HOLD_FACTOR, _Arrivals

SETTLE = 1.0


def test_a_study_is_due_settle_seconds_after_its_last_arrival() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.arrived("S", age=0.0)
    study, wait = arrivals.claim()
    assert study is None and wait == pytest.approx(SETTLE, abs=0.05)
    arrivals.arrived("S", age=SETTLE + 0.5)
    assert arrivals.claim() == ("S", None)
    assert arrivals.claim() == (None, None)  # claimed: not again until something arrives


def test_an_open_association_holds_its_study_past_settle_until_it_closes() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.opened("S")
    arrivals.arrived("S", age=SETTLE + 0.5)  # quiet for longer than settle, mid-association
    study, wait = arrivals.claim()
    assert study is None
    assert wait == pytest.approx(OPEN_HOLD_FACTOR * SETTLE - (SETTLE + 0.5), abs=0.05)
    arrivals.closed(["S"])
    assert arrivals.claim() == ("S", None)


def test_two_associations_hold_a_study_until_both_close() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.opened("S")
    arrivals.opened("S")
    arrivals.arrived("S", age=2 * SETTLE)
    arrivals.closed(["S"])
    assert arrivals.claim()[0] is None
    arrivals.closed(["S"])
    assert arrivals.claim() == ("S", None)


def test_an_association_kept_open_holds_its_study_at_most_the_hold_time() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.opened("S")
    arrivals.arrived("S", age=OPEN_HOLD_FACTOR * SETTLE + 0.5)
    assert arrivals.claim() == ("S", None)


def test_an_open_association_does_not_hold_other_studies() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.opened("A")
    arrivals.arrived("A", age=2 * SETTLE)
    arrivals.arrived("B", age=2 * SETTLE)
    assert arrivals.claim() == ("B", None)
    assert arrivals.claim()[0] is None


def test_a_resend_of_a_stored_study_is_nothing_to_look_at() -> None:
    arrivals = _Arrivals(SETTLE)
    arrivals.opened("S")  # only duplicates arrive: no call to arrived()
    arrivals.closed(["S"])
    assert arrivals.claim() == (None, None)
    arrivals.closed(["S", "unknown"])  # more closes than opens change nothing
    arrivals.arrived("S", age=2 * SETTLE)
    assert arrivals.claim() == ("S", None)
