"""``rtcheck serve``: a real node process on a free loopback port, fed by real SCUs.

Exports are generated once (tests/fixtures/plans.py) and sent with pynetdicom's SCU, and
with dcmtk's ``storescu`` when it is installed. Every wait is a bounded poll; every node
process is stopped in a ``finally`` (tests/fixtures/scu.py).
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest

from rtcheck.errors import UsageError
from rtcheck.serve import (
    CT_IMAGE,
    MR_IMAGE,
    RT_PLAN,
    STATUS_DATASET_MISMATCH,
    STATUS_OUT_OF_RESOURCES,
    Inbox,
    export_readiness,
    run_serve,
)
from tests.fixtures.plans import write_plan_export
from tests.fixtures.scu import REPO, count, echo, events, export_files, node, send, wait_for
from tests.test_golden import CENTRAL, PERIPHERAL, lung

pytest.importorskip("pynetdicom")

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SABR = ("--protocol", "sabr-lung", "--between-planes", "slab")  # slab: the quicker model
TWICE = 30  # CT slices sent twice at once


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SA (passes), SB (fails), SD (SA's RT objects, the dose's pixel data cut in half: the
    check fails) and SA2/RD.dcm (SA's dose with the same UIDs and 2 % more dose)."""
    root = tmp_path_factory.mktemp("staging")
    write_plan_export(root / "SA", replace(lung(PERIPHERAL, 3, 18), patient_id="SA"))
    write_plan_export(root / "SB", replace(lung(CENTRAL, 3, 18), patient_id="SB"))
    (root / "SA2").mkdir()
    ds = pydicom.dcmread(root / "SA" / "RD.dcm")
    ds.DoseGridScaling = float(ds.DoseGridScaling) * 1.02
    ds.save_as(root / "SA2" / "RD.dcm")
    (root / "SD").mkdir()
    for name in ("RS.dcm", "RP.dcm"):
        shutil.copyfile(root / "SA" / name, root / "SD" / name)
    bad = pydicom.dcmread(root / "SA" / "RD.dcm")
    bad.PixelData = bad.PixelData[: len(bad.PixelData) // 4 * 2]
    bad.save_as(root / "SD" / "RD.dcm")
    return root


def study_uid(export: Path) -> str:
    return str(pydicom.dcmread(export / "RP.dcm", stop_before_pixels=True).StudyInstanceUID)


def ct_variant(export: Path, sop_class: str, study: str | None) -> pydicom.Dataset:
    """A CT slice of ``export`` made into another object: new SOP instance, ``sop_class``,
    and ``study`` as its study (None: no Study Instance UID at all)."""
    ds = pydicom.dcmread(sorted((export / "CT").iterdir())[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(sop_class)
    if sop_class == MR_IMAGE:
        ds.Modality = "MR"
    if study is None:
        del ds.StudyInstanceUID
    else:
        ds.StudyInstanceUID = study
    return ds


def history(out: Path) -> list[dict[str, Any]]:
    """``rtcheck history --out OUT --json``, run as the watch tests run it."""
    result = subprocess.run(
        [sys.executable, "-m", "rtcheck.cli.watch", "history", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def associations(out: Path) -> list[dict[str, Any]]:
    return [e for e in events(out) if e["event"] == "association"]


def sent(out: Path, port: int, items: list[Path]) -> dict[str, Any]:
    """Send in one association, all successfully; its ``association`` log line."""
    before = len(associations(out))
    assert send(port, items) == [0] * len(items)
    wait_for(lambda: len(associations(out)) > before)
    line: dict[str, Any] = associations(out)[-1]
    return line


def rt_files(export: Path) -> list[Path]:
    """The RT objects of an export, without its CT (sending a CT slice takes a while)."""
    return [export / name for name in ("RS.dcm", "RP.dcm", "RD.dcm")]


def run_threads(*targets: Callable[[], None]) -> None:
    """Run the targets at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]


def test_split_export_concurrent_associations_resend_and_refusals(
    staging: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sa, sb = staging / "SA", staging / "SB"
    statuses: dict[str, list[int]] = {}

    def split_export() -> None:  # dose first; the plan in a second association, later
        statuses["sa1"] = send(port, [sa / "RD.dcm", sa / "RS.dcm", *export_files(sa / "CT")])
        wait_for(lambda: count(out, "incomplete") == 1)  # settled, but the plan is missing
        statuses["sa2"] = send(port, [sa / "RP.dcm"])

    def same_ct_twice() -> None:  # part of SA's CT again, at the same time
        statuses["ct"] = send(port, export_files(sa / "CT")[:TWICE])

    def other_export() -> None:
        statuses["sb"] = send(port, rt_files(sb))

    def odd_objects() -> None:
        assert echo(port) == 0
        mr = ct_variant(sa, MR_IMAGE, "1.2.3.4.5")  # accepted, stored, never checked
        no_study = ct_variant(sa, CT_IMAGE, None)
        statuses["odd"] = send(port, [mr, no_study])
        ae = pynetdicom_ae()
        ae.add_requested_context(SECONDARY_CAPTURE)
        ae.add_requested_context(RT_PLAN)
        assoc = ae.associate("127.0.0.1", port, ae_title="RTCHECK")
        assert assoc.is_established
        accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
        rejected = {str(c.abstract_syntax) for c in assoc.rejected_contexts}
        assoc.release()
        assert accepted == {RT_PLAN} and rejected == {SECONDARY_CAPTURE}

    with node(out, *SABR) as n:
        port = n.port
        run_threads(split_export, same_ct_twice, other_export, odd_objects)
        wait_for(lambda: count(out, "checked", "SA") == 1 and count(out, "checked", "SB") == 1)
        wait_for(lambda: len(associations(out)) == 7)  # echo, odd, SC, SA twice, CT, SB
        assert statuses["odd"] == [0, STATUS_DATASET_MISMATCH]
        assert set(statuses["sa1"] + statuses["sa2"] + statuses["ct"] + statuses["sb"]) == {0}
        checks = {e["patient_id"]: e for e in events(out) if e["event"] == "checked"}
        assert checks["SA"]["verdict"] == "pass" and checks["SB"]["verdict"] == "fail"
        for e in checks.values():
            assert (out / e["report"]).is_file() and (out / e["html"]).is_file()
        # Each SOP instance of SA's CT was written once, whichever association came first.
        n_ct = len(export_files(sa / "CT"))
        sa_study = study_uid(sa)
        sa_assocs = [a for a in associations(out) if a["studies"] == [sa_study]]
        assert sum(a["stored"] for a in sa_assocs) == n_ct + 3
        assert sum(a["duplicates"] for a in sa_assocs) == TWICE
        (waiting,) = [e for e in events(out) if e["event"] == "incomplete"]
        assert waiting["study_uid"] == sa_study and "RT plan" in waiting["waiting_for"][0]

        # The same plan again, identical: stored before, no new check.
        resend = sent(out, port, [sa / "RP.dcm"])
        assert (resend["stored"], resend["replaced"], resend["duplicates"]) == (0, 0, 1)
        # Its dose re-exported with other content: a new version, checked again.
        reexport = sent(out, port, [staging / "SA2" / "RD.dcm"])
        assert (reexport["stored"], reexport["replaced"], reexport["duplicates"]) == (0, 1, 0)
        wait_for(lambda: count(out, "checked", "SA") == 2)
        assert n.stop() == 0

    assert count(out, "checked") == 3 and count(out, "error") == 0
    assert count(out, "detected", "SA") == 2 and count(out, "stopped") == 1
    rows = history(out)
    # The re-exported dose is 2 % higher than the first: another version, another verdict.
    assert [(r["patient_id"], r["verdict"]) for r in rows if r["patient_id"] == "SA"] == [
        ("SA", "pass"),
        ("SA", "fail"),
    ]
    assert len({r["version_key"] for r in rows}) == 3 and all(r["finished_utc"] for r in rows)
    assert len(list((out / "SA").glob("*.json"))) == 2
    assert not list((out / "incoming" / ".partial").iterdir())
    assert (out / "incoming" / "1.2.3.4.5" / "MR").is_dir()
    text = (out / "serve.log").read_text(encoding="utf-8")
    assert "Synthetic" not in text  # IDs and UIDs only, never patient names
    for a in associations(out):
        assert a["calling_ae"] == "TPS" and a["called_ae"] == "RTCHECK" and a["failed"] == 0


def pynetdicom_ae(title: str = "TPS") -> Any:
    from pynetdicom import AE

    return AE(ae_title=title)


def test_sigterm_during_a_check_and_restarts_lose_and_repeat_nothing(
    staging: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sa, sb = staging / "SA", staging / "SB"
    with node(out, *SABR) as n:
        send(n.port, rt_files(sa))
        ae = pynetdicom_ae()
        ae.add_requested_context(RT_PLAN)
        held = ae.associate("127.0.0.1", n.port, ae_title="RTCHECK")  # never released
        assert held.is_established
        wait_for(lambda: count(out, "detected", "SA") == 1)
        assert n.stop() == 0  # the check in progress is finished, the association closed
        wait_for(lambda: not held.is_established)
    names = [e["event"] for e in events(out)]
    assert names.index("checked") < names.index("stopped")
    assert associations(out)[-1]["outcome"] == "aborted"

    with node(out, *SABR, settle="60") as n:  # SB arrives, the node stops before checking it
        send(n.port, rt_files(sb))
        wait_for(lambda: len(associations(out)) == 3)
        assert n.stop() == 0
    assert count(out, "detected", "SB") == 0

    with node(out, *SABR) as n:
        wait_for(lambda: count(out, "checked", "SB") == 1)
        assert sent(out, n.port, rt_files(sa))["duplicates"] == 3
        assert len(associations(out)) == 4
        assert n.stop() == 0
    assert count(out, "detected", "SA") == 1 and count(out, "checked", "SA") == 1
    assert [(r["patient_id"], r["verdict"]) for r in history(out)] == [
        ("SA", "pass"),
        ("SB", "fail"),
    ]


def test_failing_check_disk_error_incomplete_export_and_calling_ae_titles(
    staging: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sd, sb = staging / "SD", staging / "SB"
    allow = ("--allow-ae", "TPS", "--allow-ae", "TPS2", "--incomplete-timeout", "2")
    with node(out, *SABR, *allow) as n:
        assert echo(n.port, calling_ae="INTRUDER") is None
        assert echo(n.port, calling_ae="TPS", called_ae="ELSEWHERE") is None
        assert echo(n.port, calling_ae="TPS2") == 0
        wait_for(lambda: len(associations(out)) == 3)
        first, second, third = associations(out)
        assert (first["outcome"], first["calling_ae"]) == ("rejected", "INTRUDER")
        assert (second["outcome"], second["called_ae"]) == ("rejected", "ELSEWHERE")
        assert (third["outcome"], third["calling_ae"], third["called_ae"]) == (
            "released",
            "TPS2",
            "RTCHECK",
        )

        # The study's folder cannot be made: out of resources, logged, nothing stored.
        blocker = out / "incoming" / study_uid(sd)
        blocker.write_text("not a folder")
        assert send(n.port, [sd / "RP.dcm"]) == [STATUS_OUT_OF_RESOURCES]
        wait_for(lambda: count(out, "store_failed") == 1)
        failed = next(e for e in events(out) if e["event"] == "store_failed")
        assert failed["status"] == "0xA700" and failed["reason"]
        blocker.unlink()

        # A plan whose check fails is an error row; the node goes on with the next one.
        assert set(send(n.port, rt_files(sd))) == {0}
        wait_for(lambda: count(out, "error", "SA") == 1)

        # A dose whose plan never comes: an error row once the wait is over; the plan and
        # its structure set arriving later still get their check.
        assert send(n.port, [sb / "RD.dcm"]) == [0]
        wait_for(lambda: count(out, "incomplete") == 1)
        wait_for(lambda: count(out, "error", "") == 1)
        assert set(send(n.port, [sb / "RS.dcm", sb / "RP.dcm"])) == {0}
        wait_for(lambda: count(out, "checked", "SB") == 1)
        assert n.stop() == 0
    lone = next(e for e in events(out) if e["event"] == "error" and not e["patient_id"])
    assert lone["study_uid"] == study_uid(sb) and "missing referenced RT plan" in lone["reason"]
    error = next(e for e in events(out) if e["event"] == "error")
    assert error["verdict"] == "error" and error["reason"]
    rows = history(out)
    assert [(r["patient_id"], r["verdict"]) for r in rows] == [
        ("SA", "error"),
        ("", "error"),
        ("SB", "fail"),
    ]
    assert rows[0]["message"] and rows[0]["report"] is None


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk's storescu is not installed")
def test_dcmtk_storescu_and_echoscu(staging: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with node(out, *SABR, "--ae-title", "QA_NODE") as n:  # RT objects only: quicker
        if shutil.which("echoscu") is not None:
            ping = subprocess.run(
                ["echoscu", "-aet", "TPS", "-aec", "QA_NODE", "127.0.0.1", str(n.port)],
                capture_output=True,
                timeout=30,
            )
            assert ping.returncode == 0, ping.stderr
        push = subprocess.run(
            ["storescu", "-aet", "TPS", "-aec", "QA_NODE", "-R",
             "127.0.0.1", str(n.port), *map(str, rt_files(staging / "SA"))],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert push.returncode == 0, push.stderr
        wait_for(lambda: count(out, "checked", "SA") == 1)
        assert n.stop() == 0
    (check,) = [e for e in events(out) if e["event"] == "checked"]
    assert check["verdict"] == "pass" and (out / check["report"]).is_file()


def test_inbox_stores_atomically_and_tells_resends_apart(staging: Path, tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "incoming")
    inbox.prepare()
    (inbox.partial / "left-by-a-crash.tmp").write_bytes(b"x")
    inbox.prepare()
    assert not list(inbox.partial.iterdir())
    sa = staging / "SA"
    study = study_uid(sa)

    def store(path: Path) -> str:
        ds = pydicom.dcmread(path)
        raw = path.read_bytes()
        body = raw[132 + 12 + ds.file_meta.FileMetaInformationGroupLength :]
        syntax = str(ds.file_meta.TransferSyntaxUID)
        return inbox.store(str(ds.SOPClassUID), str(ds.SOPInstanceUID), study, syntax, body).state

    assert export_readiness(tmp_path / "incoming" / study).state == "empty"
    assert store(sa / "RD.dcm") == "stored"
    readiness = export_readiness(tmp_path / "incoming" / study)
    assert readiness.state == "incomplete" and "RT plan" in readiness.missing[0]
    assert store(sa / "RP.dcm") == "stored"
    readiness = export_readiness(tmp_path / "incoming" / study)
    assert readiness.state == "incomplete" and "structure set" in readiness.missing[0]
    assert store(sa / "RS.dcm") == "stored"
    assert export_readiness(tmp_path / "incoming" / study).state == "ready"
    signature = inbox.signature(study)
    assert store(sa / "RD.dcm") == "duplicate"
    assert inbox.signature(study) == signature  # nothing rewritten
    assert store(staging / "SA2" / "RD.dcm") == "replaced"
    (dose,) = (tmp_path / "incoming" / study / "RTDOSE").iterdir()
    again = pydicom.dcmread(dose)
    assert float(again.DoseGridScaling) != float(pydicom.dcmread(sa / "RD.dcm").DoseGridScaling)
    assert again.SOPInstanceUID == dose.stem
    assert not list(inbox.partial.iterdir())


def test_usage_errors(tmp_path: Path) -> None:
    code = (
        "import sys, runpy\nsys.modules['pynetdicom'] = None\nsys.argv[0] = 'rtcheck'\n"
        "runpy.run_module('rtcheck.cli.serve', run_name='__main__')\n"
    )
    missing = subprocess.run(
        [sys.executable, "-c", code, "serve", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert missing.returncode == 2 and "rtcheck[serve]" in missing.stderr

    def serve(**options: Any) -> None:
        run_serve(tmp_path / "out", stream=io.StringIO(), **options)

    with pytest.raises(UsageError, match="AE title"):
        serve(ae_title="A" * 17)
    with pytest.raises(UsageError, match="AE title"):
        serve(allow_ae=["BACK\\SLASH"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            serve(port=taken.getsockname()[1])
    with pytest.raises(UsageError, match="no shipped protocol"):
        serve(protocol="nope", port=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        run_serve(tmp_path / "file", port=0, stream=io.StringIO())


def test_kill_9_during_a_check_then_restart_checks_it_once(staging: Path, tmp_path: Path) -> None:
    # SIGKILL gives the node no chance to finish or record anything: the check that was
    # running has a ledger row without an end. The restarted node finds the stored export
    # in its inbox and checks it to the end, once; nothing half-written is left in OUT.
    import signal

    out = tmp_path / "out"
    sa = staging / "SA"
    with node(out, *SABR) as n:
        assert send(n.port, rt_files(sa)) == [0, 0, 0]
        wait_for(lambda: count(out, "detected", "SA") == 1)
        n.proc.send_signal(signal.SIGKILL)
        assert n.proc.wait(timeout=20) == -signal.SIGKILL
    assert count(out, "checked", "SA") + count(out, "error", "SA") <= 1
    killed_before_the_end = count(out, "checked", "SA") == 0

    with node(out, *SABR) as n:
        wait_for(lambda: count(out, "checked", "SA") == 1)
        assert sent(out, n.port, rt_files(sa))["duplicates"] == 3  # stored once, kept
        assert n.stop() == 0
    assert count(out, "checked", "SA") == 1 and count(out, "error") == 0
    assert count(out, "detected", "SA") == (2 if killed_before_the_end else 1)
    (row,) = history(out)
    assert (row["patient_id"], row["verdict"]) == ("SA", "pass") and row["finished_utc"]
    assert len(list((out / "SA").glob("*.json"))) == 1
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    assert not list((out / "incoming" / ".partial").iterdir())


def test_kill_9_during_an_association_then_the_resend_is_stored(
    staging: Path, tmp_path: Path
) -> None:
    # Killed while a planning system is still sending (the association is open): what was
    # being received is not in the inbox as a file of the export; the system's resend
    # after the restart is stored and checked once.
    import signal

    out = tmp_path / "out"
    sa = staging / "SA"
    with node(out, *SABR, settle="60") as n:
        assert send(n.port, [sa / "RS.dcm"]) == [0]
        ae = pynetdicom_ae()
        ae.add_requested_context(RT_PLAN)
        held = ae.associate("127.0.0.1", n.port, ae_title="RTCHECK")  # left open
        assert held.is_established
        n.proc.send_signal(signal.SIGKILL)
        assert n.proc.wait(timeout=20) == -signal.SIGKILL
        wait_for(lambda: not held.is_established)
    with node(out, *SABR) as n:
        statuses = send(n.port, rt_files(sa))
        assert statuses == [0, 0, 0]
        wait_for(lambda: count(out, "checked", "SA") == 1)
        assert n.stop() == 0
    assert count(out, "checked", "SA") == 1 and count(out, "error") == 0
    assert [(r["patient_id"], r["verdict"]) for r in history(out)] == [("SA", "pass")]
    assert not list(out.rglob("*.tmp"))


def test_a_corrupt_ledger_stops_the_node_at_start_naming_it(tmp_path: Path) -> None:
    # The ledger is never repaired or replaced: exit 3 naming it, with advice for serve.
    out = tmp_path / "out"
    out.mkdir()
    ledger = out / "ledger.sqlite"
    ledger.write_bytes(b"not a database, whatever its name says" * 100)
    before = ledger.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "rtcheck.cli.serve", "serve", "--out", str(out), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 3, result.stderr
    assert str(ledger) in result.stderr and "Traceback" not in result.stderr
    assert "run rtcheck serve again" in result.stderr and "its inbox" in result.stderr
    assert ledger.read_bytes() == before


def test_aliases_and_strict(staging: Path, tmp_path: Path) -> None:
    # SA with its PTV named "Zielvolumen": found through an alias file; its minor
    # deviation (R100) fails the plan with --strict, as in batch and watch.
    export = tmp_path / "SR"
    export.mkdir()
    for name in ("RP.dcm", "RD.dcm"):
        shutil.copyfile(staging / "SA" / name, export / name)
    rs = pydicom.dcmread(staging / "SA" / "RS.dcm")
    for roi in rs.StructureSetROISequence:
        if roi.ROIName == "PTV":
            roi.ROIName = "Zielvolumen"
    rs.save_as(export / "RS.dcm")
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("PTV: [Zielvolumen]\n", encoding="utf-8")
    verdicts = []

    def checked_once(folder: Path) -> bool:
        return count(folder, "checked", "SA") == 1

    for k, extra in enumerate(
        ((), ("--aliases", str(aliases)), ("--aliases", str(aliases), "--strict"))
    ):
        out = tmp_path / f"out{k}"
        with node(out, *SABR, *extra) as n:
            assert send(n.port, rt_files(export)) == [0, 0, 0]
            wait_for(functools.partial(checked_once, out))
            assert n.stop() == 0
        (checked,) = [e for e in events(out) if e["event"] == "checked"]
        verdicts.append((checked["verdict"], checked.get("failed_rules")))
    assert verdicts[0][0] == "fail"  # no PTV found: its rules not evaluated, one fails
    assert verdicts[1] == ("pass", None)
    assert verdicts[2] == ("fail", ["ptv-r100"])

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("NoSuchRole: [x]\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "rtcheck.cli.serve", "serve", "--out", str(tmp_path / "o4"),
         "--port", "0", "--protocol", "sabr-lung", "--aliases", str(unknown)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2 and "NoSuchRole" in result.stderr
    assert not (tmp_path / "o4").exists()
