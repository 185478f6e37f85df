"""`rtcheck batch`: a generated archive checked by the library, the CLI and a Dask cluster.

The archive (written once per module):

- ``P1/peripheral`` and ``P1/central``: patient ``P1<&>``, the golden lung plans
  ``lung(PERIPHERAL, 3, 18)`` (passes) and ``lung(CENTRAL, 3, 18)`` (fails), labelled
  ``LUNG R`` and ``LUNG L``; plus a text file the scan skips with a warning.
- ``P2``: patient ``P2``, a plan whose RTDOSE is truncated: its scan fails (an error row
  without patient or label), the batch goes on.
- ``P3/a`` and ``P3/b``: patient ``../../etc``, two plans with the same label ``..\\x``;
  ``P3/c`` holds only a dose whose plan is elsewhere (P2's, whole), so the scan of ``P3``
  fails and is split into its sub-folders: ``a`` and ``b`` are checked, ``c`` is an error
  row.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from pydicom import dcmread
from pydicom.uid import UID
from typer.testing import CliRunner

from rtcheck import batch as batch_module
from rtcheck.batch import (
    BatchResult,
    PlanJob,
    PlanOutcome,
    check_one,
    discover,
    execute,
    prepare_jobs,
    run_batch,
    safe_name,
)
from rtcheck.cli.batch import _progress, batch
from rtcheck.dicom_io import ExportSet
from rtcheck.errors import InputError, MissingExtraError, UsageError
from tests.fixtures.plans import write_plan_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

HAS_HTML = importlib.util.find_spec("rtcheck.reports.html") is not None
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# (folder, patient, label, verdict) of every row the archive gives.
EXPECTED = [
    ("P2", "", "", "error"),
    ("P3/c", "", "", "error"),
    ("P3/a", "../../etc", "..\\x", "pass"),
    ("P3/b", "../../etc", "..\\x", "fail"),
    ("P1/central", "P1<&>", "LUNG L", "fail"),
    ("P1/peripheral", "P1<&>", "LUNG R", "pass"),
]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the sha256 of its content."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        )
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("archive") / "root"
    write_plan_export(
        root / "P1" / "peripheral",
        replace(lung(PERIPHERAL, 3, 18), patient_id="P1<&>", label="LUNG R"),
    )
    write_plan_export(
        root / "P1" / "central", replace(lung(CENTRAL, 3, 18), patient_id="P1<&>", label="LUNG L")
    )
    (root / "P1" / "notes.txt").write_text("not DICOM\n", encoding="utf-8")
    write_plan_export(
        root / "P2", replace(lung(PERIPHERAL, 3, 18), patient_id="P2", label="BROKEN")
    )
    dose = root / "P2" / "RD.dcm"
    (root / "P3" / "c").mkdir(parents=True)
    shutil.copy(dose, root / "P3" / "c" / "RD.dcm")  # whole; its plan is P2's
    dose.write_bytes(dose.read_bytes()[: dose.stat().st_size // 2])
    for sub, lesion in (("a", PERIPHERAL), ("b", CENTRAL)):
        write_plan_export(
            root / "P3" / sub, replace(lung(lesion, 3, 18), patient_id="../../etc", label="..\\x")
        )
    (root / ".DS_Store").write_bytes(b"\0\1")
    return root, tree_hashes(root)


@pytest.fixture(scope="module")
def pool_run(
    archive: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[BatchResult, list[PlanOutcome], int]:
    root, _ = archive
    seen: list[PlanOutcome] = []
    started: list[int] = []
    result = run_batch(
        root,
        tmp_path_factory.mktemp("pool") / "out",
        workers=2,
        on_start=started.append,
        on_done=seen.append,
    )
    return result, seen, started[0]


def _label(o: PlanOutcome) -> str:
    # A backslash separates DICOM values: "..\x" is read back as the two values ".." and "x".
    return "..\\x" if o.plan_label == "['..', 'x']" else o.plan_label


def _rows(outcomes: list[PlanOutcome]) -> list[tuple[str, str, str, str]]:
    return [(o.source, o.patient_id, _label(o), o.verdict) for o in outcomes]


#: What differs between two runs of the same check: when it ran, and how the protocol was
#: chosen (auto selection is recorded, a named protocol is not).
_VOLATILE = ("checked_at", "checked_at_local", "selection")


def _reports(out: Path) -> dict[str, object]:
    reports: dict[str, object] = {}
    for p in out.rglob("*.json"):
        doc = json.loads(p.read_text("utf-8"))
        if isinstance(doc, dict):
            for key in _VOLATILE:
                doc.pop(key, None)
        reports[p.relative_to(out).as_posix()] = doc
    return reports


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc", "etc"),
        ("..\\x", "x"),
        ("..", "plan"),
        ("", "plan"),
        ("   ", "plan"),
        (".hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ("a\x00b\nc\x7f", "a_b_c"),
        ("LUNG R", "LUNG_R"),
        ("Müller", "Muller"),
        ("a..b", "a.b"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("Com1", "_Com1"),
        ("trailing. ", "trailing"),
        ("-rf", "rf"),
    ],
)
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text, "plan") == expected


def test_safe_name_is_always_one_short_harmless_component() -> None:
    for text in ["x" * 500, "/" * 10, "..\\..\\windows", "\u202e\u0000", "a" + "." * 80, "日本語"]:
        name = safe_name(text, "fallback")
        assert SAFE.match(name), (text, name)
        assert ".." not in name and len(name) <= 64


def _set(patient: str, label: str, uid: str) -> ExportSet:
    p = Path(f"/x/{uid}")
    return ExportSet(patient, uid, label, p / "RP.dcm", p / "RS.dcm", (p / "RD.dcm",), "PLAN")


def test_report_names_never_collide(tmp_path: Path) -> None:
    sets = [
        _set("A/B", "Plan", "1.1"),
        _set("A_B", "Plan", "1.2"),  # sanitises like "A/B": another folder
        _set("P", "Plan", "1.3"),
        _set("P", "PLAN", "1.4"),  # same name on a case-insensitive file system
        _set("P", "Plan", "1.4"),  # the same plan twice (two copies of the export)
        _set("P", "Other", "1.5"),
        _set("index.html", "x", "1.6"),  # would take the index's name
        _set("", "", "1.7"),
    ]
    jobs = prepare_jobs([("src", s) for s in sets], tmp_path)
    paths = [f"{j.patient_dir}/{j.stem}".casefold() for j in jobs]
    assert len(set(paths)) == len(paths), paths
    assert len({j.patient_dir for j in jobs[:2]}) == 2
    assert jobs[5].stem == "Other"  # no collision: the plain label
    assert jobs[2].stem == f"Plan-{hashlib.sha256(b'1.3').hexdigest()[:8]}"
    assert jobs[6].patient_dir.casefold() != "index.html"
    assert (jobs[7].patient_dir, jobs[7].stem) == ("unknown-patient", "plan")
    for job in jobs:
        assert SAFE.match(job.patient_dir) and SAFE.match(job.stem)
        assert job.out == tmp_path.resolve()


# -- discovery -----------------------------------------------------------------------------


def test_discover_splits_a_failing_container(archive: tuple[Path, dict[str, str]]) -> None:
    root, _ = archive
    found = discover(root)
    assert [source for source, _ in found.plans] == [
        "P3/a",
        "P3/b",
        "P1/central",
        "P1/peripheral",
    ]
    assert [e.source for e in found.errors] == ["P2", "P3/c"]
    assert "truncated DICOM file" in found.errors[0].message
    assert "missing referenced RT plan" in found.errors[1].message
    assert any(w.startswith("P1: skipped notes.txt") for w in found.warnings), found.warnings


def test_discover_with_the_folders_scanned_in_worker_processes_finds_the_same(
    archive: tuple[Path, dict[str, str]],
) -> None:
    # run_batch scans the patient folders in its worker pool; a folder whose scan fails
    # there (P2, P3) is scanned again in this process, split into its subfolders.
    root, _ = archive
    serial = discover(root)
    mapped: list[Path] = []

    with batch_module.worker_pool(2) as pool:

        def map_folders(scan: Any, folders: Any) -> Any:
            mapped.extend(folders)
            return pool.map(scan, folders)

        parallel = discover(root, map_folders)
    assert sorted(p.name for p in mapped) == ["P1", "P2", "P3"]
    assert parallel.plans == serial.plans
    assert [(e.source, e.message) for e in parallel.errors] == [
        (e.source, e.message) for e in serial.errors
    ]
    assert parallel.warnings == serial.warnings


def test_discover_export_folder_and_empty_root(
    archive: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = archive
    found = discover(root / "P1" / "peripheral")  # holds files itself: one export folder
    assert [s.plan_label for _, s in found.plans] == ["LUNG R"]
    assert found.plans[0][0] == "."
    with pytest.raises(InputError, match="empty"):
        discover(tmp_path)
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "missing")


# -- the batch through the library ---------------------------------------------------------


def test_batch_rows_and_verdicts(
    archive: tuple[Path, dict[str, str]],
    pool_run: tuple[BatchResult, list[PlanOutcome], int],
) -> None:
    root, before = archive
    result, seen, started = pool_run
    assert _rows(result.outcomes) == EXPECTED
    assert result.verdict == "error" and result.counts == {"pass": 2, "fail": 2, "error": 2}
    assert started == len(seen) == 6
    assert sorted(map(_rows, [[o] for o in seen])) == sorted([[r] for r in EXPECTED])
    by_source = {o.source: o for o in result.outcomes}
    assert "truncated DICOM file" in by_source["P2"].message
    assert "RD.dcm" in by_source["P2"].message
    assert by_source["P1/central"].major >= 1 and by_source["P1/central"].protocol_id == "sabr-lung"
    # The fixture's 100 % isodose lies 15 % beyond the PTV radius: R100 is a minor deviation.
    assert by_source["P1/peripheral"].major == 0 and by_source["P1/peripheral"].minor == 1
    assert tree_hashes(root) == before  # nothing in ROOT written, added or removed


def test_batch_reports(pool_run: tuple[BatchResult, list[PlanOutcome], int]) -> None:
    result, _, _ = pool_run
    out = result.out
    checked = [o for o in result.outcomes if o.json_report is not None]
    assert len(checked) == 4
    for o in checked:
        assert o.json_report is not None
        path = out / o.json_report
        assert path.resolve().parent.parent == out
        assert all(SAFE.match(part) for part in Path(o.json_report).parts)
        doc = json.loads(path.read_text("utf-8"))
        assert doc["schema"] == "rtcheck.report/1"
        assert doc["verdict"] == o.verdict
        assert doc["plan"]["sop_instance_uid"] == o.plan_uid
        assert doc["patient_id"] == o.patient_id
        if HAS_HTML:
            assert o.html_report is not None and (out / o.html_report).is_file()
        else:
            assert o.html_report is None and any("HTML" in n for n in o.notes)
    # Same patient, same label: two reports, neither overwritten.
    same = [o for o in checked if o.patient_id == "../../etc"]
    assert len(same) == 2 and same[0].json_report != same[1].json_report
    assert {json.loads((out / str(o.json_report)).read_text("utf-8"))["verdict"] for o in same} == {
        "pass",
        "fail",
    }
    # The traversal attempt stays one folder below the output.
    assert all(str(o.json_report).startswith("etc/") for o in same)
    folders = {str(o.json_report).split("/")[0] for o in checked}
    assert folders == {"etc", "P1"}
    assert {p.name for p in out.iterdir()} == folders | {"index.html", "summary.csv"}
    assert not list(out.rglob("*.tmp"))


def test_summary_csv(pool_run: tuple[BatchResult, list[PlanOutcome], int]) -> None:
    result, _, _ = pool_run
    text = (result.out / "summary.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["source"], r["verdict"]) for r in rows] == [(e[0], e[3]) for e in EXPECTED]
    for row, o in zip(rows, result.outcomes, strict=True):
        assert row["plan_sop_instance_uid"] == o.plan_uid
        assert row["json_report"] == (o.json_report or "")
        assert int(row["major"]) == o.major
    assert rows[0]["message"].startswith(str(result.root / "P2" / "RD.dcm"))


#: Why --protocol auto chose sabr-lung for the archive's lung plans, and the intent note.
SELECTION = ("3 fractions in 1-8", "ROIs for PTV, Lungs, Bronchus")
INTENT_NOTE = "the plan's intent decided: sabr-lung rather than palliative (for intent PALLIATIVE)"


def test_rules_and_selection_of_each_plan(
    pool_run: tuple[BatchResult, list[PlanOutcome], int],
) -> None:
    """Which rules failed, which deviated a little, which were not evaluated, and how
    --protocol auto chose: in the outcomes, summary.csv and index.html."""
    result, _, _ = pool_run
    by_source = {o.source: o for o in result.outcomes}
    central, peripheral = by_source["P1/central"], by_source["P1/peripheral"]
    assert (central.failed_rules, central.minor_rules) == (("schedule-central",), ("ptv-r100",))
    assert (peripheral.failed_rules, peripheral.minor_rules) == ((), ("ptv-r100",))
    for o in (central, peripheral):
        assert o.not_evaluated_rules == ()
        assert (o.selection, o.selection_note) == (SELECTION, INTENT_NOTE)
    orphan = by_source["P3/c"]  # not scanned: no rules, the error says why
    assert (orphan.failed_rules, orphan.not_evaluated_rules, orphan.selection) == ((), (), ())
    assert "missing referenced RT plan" in orphan.message
    # The scan's advice names a command that has the options, not batch's missing ones.
    assert "rtcheck check --structures RS.dcm --dose RD.dcm [--plan RP.dcm]" in orphan.message
    assert "name the files explicitly instead: --structures" not in orphan.message

    rows = {
        r["source"]: r
        for r in csv.DictReader(io.StringIO((result.out / "summary.csv").read_text("utf-8")))
    }
    assert (rows["P1/central"]["failed_rules"], rows["P1/central"]["minor_rules"]) == (
        "schedule-central",
        "ptv-r100",
    )
    assert rows["P1/peripheral"]["failed_rules"] == ""
    assert rows["P1/central"]["selection"] == "; ".join(SELECTION)
    assert rows["P1/central"]["selection_note"] == INTENT_NOTE
    assert rows["P3/c"]["selection"] == rows["P3/c"]["failed_rules"] == ""

    page = (result.out / "index.html").read_text("utf-8")
    assert "<th>Rules</th>" in page
    assert '<div class="rules">failed: schedule-central</div>' in page
    assert page.count('<div class="rules">minor: ptv-r100</div>') == 4  # every checked plan
    assert f"auto: {'; '.join(SELECTION)}" in page
    assert html.escape(INTENT_NOTE, quote=True) in page


def test_index_html(pool_run: tuple[BatchResult, list[PlanOutcome], int]) -> None:
    result, _, _ = pool_run
    page = (result.out / "index.html").read_text("utf-8")
    assert "P1<&>" not in page and "P1&lt;&amp;&gt;" in page
    assert "<script>" in page and page.count("<script") == 1  # the sorting script only
    assert 'class="sortable"' in page and "addEventListener" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    links = re.findall(r'href="([^"]+)"', page)
    for o in result.outcomes:
        if o.json_report is not None:
            assert o.json_report in links
    for link in links:
        assert (result.out / link).is_file(), link
    verdicts = re.findall(r'<td class="(pass|fail|error) verdict"', page)
    assert verdicts == [e[3] for e in EXPECTED]
    assert "skipped notes.txt" in page  # scan warnings are listed


# -- the command ---------------------------------------------------------------------------


def cli_app() -> typer.Typer:
    """A throwaway app registering the command as rtcheck.cli does."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    app.command()(batch)
    return app


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app(), ["batch", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_cli_exit_code_and_same_reports(
    archive: tuple[Path, dict[str, str]],
    pool_run: tuple[BatchResult, list[PlanOutcome], int],
    tmp_path: Path,
) -> None:
    root, before = archive
    out = tmp_path / "cli"
    code, stdout, stderr = run_cli(root, "--out", out, "--workers", "2", "--protocol", "sabr-lung")
    assert code == 3, stderr
    assert "6 plan(s): 2 pass, 2 fail, 2 error" in stdout
    assert "error: folder (P2): " in stderr and "truncated DICOM file" in stderr
    assert (
        "fail: P1<&> / LUNG L (P1/central): 1 major, 1 minor deviation(s) "
        "(failed: schedule-central)"
    ) in stderr
    assert "scan warning" in stderr
    assert (out / "index.html").is_file() and (out / "summary.csv").is_file()
    assert _reports(out) == _reports(pool_run[0].out)  # auto picked sabr-lung for all
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text("utf-8"))))
    # A named protocol: nothing was selected.
    assert {(r["selection"], r["selection_note"]) for r in rows} == {("", "")}
    assert tree_hashes(root) == before


def test_cli_fail_only_exits_1(archive: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, before = archive
    code, stdout, _ = run_cli(root / "P1", "--out", tmp_path / "o", "--workers", "1")
    assert code == 1
    assert "2 plan(s): 1 pass, 1 fail, 0 error" in stdout
    assert tree_hashes(root) == before


def test_cli_between_planes_reaches_every_report(
    archive: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, before = archive
    out = tmp_path / "o"
    code, _, _ = run_cli(root / "P1", "--out", out, "--workers", "1", "--between-planes", "shape")
    assert code == 1  # as without the option: one plan of P1 fails
    reports = sorted(out.glob("*/*.json"))
    assert reports
    for path in reports:
        assert json.loads(path.read_text("utf-8"))["between_planes"] == "shape"
    assert tree_hashes(root) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--executor", "dask"), "--scheduler"),
        (("--scheduler", "tcp://127.0.0.1:1"), "only used with --executor dask"),
        (("--protocol", "no-such-protocol"), "no shipped protocol"),
        (("--executor", "threads"), "threads"),
    ],
)
def test_cli_usage_errors(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    root, _ = archive
    out = tmp_path / "o"
    code, _, stderr = run_cli(root, "--out", out, *args)
    assert code == 2 and message in stderr
    assert not out.exists()


def test_output_inside_the_archive_is_refused(archive: tuple[Path, dict[str, str]]) -> None:
    root, before = archive
    code, _, stderr = run_cli(root, "--out", root / "reports")
    assert code == 2 and "never writes into the archive" in stderr
    with pytest.raises(UsageError):
        run_batch(root / "P1", root)
    assert tree_hashes(root) == before


def test_missing_root_exits_3(tmp_path: Path) -> None:
    code, _, stderr = run_cli(tmp_path / "nothing", "--out", tmp_path / "o")
    assert code == 3 and "folder not found" in stderr


def test_progress_bar_runs(tmp_path: Path) -> None:
    with _progress(True, tmp_path / "[bold]") as (start, done):
        assert start is not None and done is not None
        start(2)
        done(PlanOutcome("P", "L", "1.2", ".", "pass"))
        done(PlanOutcome("P", "M", "1.3", ".", "error"))
    with _progress(False, tmp_path) as (start, done):
        assert start is None and done is None


# -- one job, and workers that die ---------------------------------------------------------


def _job(root: Path, out: Path, source: str = "P1/peripheral") -> PlanJob:
    plans = [p for p in discover(root).plans if p[0] == source]
    return prepare_jobs(plans, out)[0]


def test_check_one_without_the_html_module(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "_html_module", lambda: None)
    outcome = check_one(_job(archive[0], tmp_path))
    assert outcome.verdict == "pass" and outcome.html_report is None
    assert outcome.notes == ("HTML report not written: rtcheck.reports.html is not installed",)
    assert outcome.json_report is not None and (tmp_path / outcome.json_report).is_file()


def test_check_one_turns_exceptions_into_error_rows(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("rtcheck.constraints.engine.check_plan", boom)
    outcome = check_one(_job(archive[0], tmp_path))
    assert outcome.verdict == "error" and outcome.message == "internal error: RuntimeError: boom"
    assert outcome.detail is not None and "RuntimeError" in outcome.detail
    assert outcome.plan_label == "LUNG R" and outcome.json_report is None


class _ExitsWhenUnpickled:
    """Unpickling this in a worker ends the worker process, as an out-of-memory kill would."""

    patient_id, plan_label, plan_uid = "BOMB", "BOMB", "9.9"

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return os._exit, (70,)


def test_a_dying_worker_is_one_error_row(
    archive: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    good = _job(archive[0], tmp_path)
    # Not an ExportSet on purpose: unpickling it in the worker kills the worker process.
    bomb = replace(good, export=_ExitsWhenUnpickled(), stem="bomb")  # type: ignore[arg-type]  # a non-export on purpose
    seen: list[PlanOutcome] = []
    outcomes = execute([bomb, good], workers=2, on_done=seen.append)
    assert outcomes[0].verdict == "error" and "died" in outcomes[0].message
    assert outcomes[1].verdict == "pass"
    assert len(seen) == 2


# -- Dask ----------------------------------------------------------------------------------


def test_missing_dask_names_the_extra(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    out = tmp_path / "o"
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'rtcheck[dask]'")):
        run_batch(archive[0], out, executor="dask", scheduler="tcp://127.0.0.1:1")
    code, _, stderr = run_cli(
        archive[0], "--out", out, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"
    )
    assert code == 2 and "rtcheck[dask]" in stderr and "--executor dask" in stderr
    assert not out.exists()


def test_dask_cluster_gives_the_process_pool_results(
    archive: tuple[Path, dict[str, str]],
    pool_run: tuple[BatchResult, list[PlanOutcome], int],
    tmp_path: Path,
) -> None:
    distributed = pytest.importorskip(
        "distributed", reason="dask[distributed] not installed (pip install 'rtcheck[dask]')"
    )
    dask = pytest.importorskip("dask")
    root, before = archive
    # Dask's default MALLOC_TRIM_THRESHOLD_ for workers slows NumPy allocations down.
    trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with warnings.catch_warnings(), dask.config.set(trim):
        # Dask may warn about ports, versions or deprecations of its own; not ours to fail on.
        warnings.filterwarnings("ignore", module=r"(dask|distributed|tornado)(\.|$)")
        with distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster:
            result = run_batch(
                root, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address
            )
    expected = pool_run[0]
    assert result.outcomes == expected.outcomes
    assert _reports(result.out) == _reports(expected.out)
    assert (result.out / "summary.csv").read_text() == (expected.out / "summary.csv").read_text()
    assert tree_hashes(root) == before


def test_loose_files_beside_export_folders_do_not_hide_them(
    archive: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    # ROOT holds a README beside the patient folders (like ../shared/data) and P4 holds a
    # dose whose plan is absent: the scan of ROOT as one export fails, so its subfolders
    # are checked one by one, every plan still gets its row, P4 is an error row and the
    # README is named as not checked.
    root, _ = archive
    copy = tmp_path / "with-readme"
    shutil.copytree(root, copy)
    (copy / "README.md").write_text("an archive\n", encoding="utf-8")
    orphan = dcmread(copy / "P1" / "peripheral" / "RD.dcm")
    orphan.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    orphan.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4.5.6.7.8.9")
    orphan.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.10"
    (copy / "P4").mkdir()
    orphan.save_as(copy / "P4" / "RD.dcm")
    found = discover(copy)
    labels = sorted(s.plan_label for _, s in found.plans)
    assert labels == sorted(s.plan_label for _, s in discover(root).plans)
    assert "P4" in [e.source for e in found.errors]
    assert any("README.md" in w and "not checked" in w for w in found.warnings), found.warnings
