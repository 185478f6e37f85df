"""When ``rtcheck serve`` looks at a study: settle time, and associations still open.

These drive :class:`rtcheck.serve._Arrivals` directly, and the storage handlers of
:class:`rtcheck.serve._Node` with stand-in events (no network, no pynetdicom): an
arrival ``age`` seconds ago stands for a clock that has moved on.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian

from rtcheck.serve import (
    CT_IMAGE,
    OPEN_HOLD_FACTOR,
    STATUS_SUCCESS,
    Inbox,
    JsonLog,
    _Arrivals,
    _Node,
)

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


STUDY = "1.2.826.0.1.3680043.8.498.1"


class _Assoc:
    """Stands in for a pynetdicom association (weakly referenced, like the real one)."""

    requestor = SimpleNamespace(ae_title="TPS", address="127.0.0.1", port=104)
    acceptor = SimpleNamespace(ae_title="RTCHECK")


def _store_event(assoc: _Assoc, study: str) -> Any:
    """A C-STORE event of one CT object of ``study``, its data set encoded as sent."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = CT_IMAGE, "1.2.3", study
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return SimpleNamespace(
        assoc=assoc,
        context=SimpleNamespace(abstract_syntax=CT_IMAGE, transfer_syntax=ExplicitVRLittleEndian),
        request=SimpleNamespace(AffectedSOPInstanceUID="1.2.3"),
        dataset=ds,
        encoded_dataset=lambda include_meta=False: buffer.getvalue(),
    )


def _node(tmp_path: Path) -> tuple[_Node, _Arrivals, io.StringIO]:
    """The node's handlers on a real inbox under ``tmp_path``, logging to a string."""
    arrivals = _Arrivals(SETTLE)
    inbox = Inbox(tmp_path / "incoming")
    inbox.prepare()
    stream = io.StringIO()
    return _Node(inbox, arrivals, JsonLog(stream)), arrivals, stream


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def test_a_stored_object_holds_its_study_until_the_association_closes(tmp_path: Path) -> None:
    node, arrivals, stream = _node(tmp_path)
    assoc = _Assoc()
    node.on_open(SimpleNamespace(assoc=assoc))
    assert node.on_store(_store_event(assoc, STUDY)) == STATUS_SUCCESS
    arrivals.arrived(STUDY, age=2 * SETTLE)  # quiet for longer than settle
    assert arrivals.claim()[0] is None
    node.on_close(SimpleNamespace(assoc=assoc))
    assert _events(stream) == ["association"]
    assert arrivals.claim() == (STUDY, None)


def test_an_object_served_after_its_association_closed_holds_nothing(tmp_path: Path) -> None:
    # pynetdicom closes the connection in another thread: a C-STORE still being served
    # (or queued) when the peer aborts ends after on_close. Its study must not be held
    # for OPEN_HOLD_FACTOR settle periods by an association that no longer exists.
    node, arrivals, _ = _node(tmp_path)
    assoc = _Assoc()
    node.on_open(SimpleNamespace(assoc=assoc))
    node.on_close(SimpleNamespace(assoc=assoc))
    assert node.on_store(_store_event(assoc, STUDY)) == STATUS_SUCCESS
    arrivals.arrived(STUDY, age=2 * SETTLE)
    assert arrivals.claim() == (STUDY, None)
