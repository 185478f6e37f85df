"""``rtcheck watch`` and ``rtcheck history``: a real watcher process on a temporary folder.

Exports are generated once into a staging folder, then copied into the watched folder file
by file (the dose with a pause in the middle of the write, as a slow network copy does).
Every wait is bounded; every watcher process is terminated in a ``finally``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.fixtures.plans import write_plan_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

REPO = Path(__file__).resolve().parents[1]
SETTLE = "1"
TIMEOUT = 20.0


def _has_watchdog() -> bool:
    try:
        import watchdog.observers  # noqa: F401
    except ImportError:
        return False
    return True


needs_watchdog = pytest.mark.skipif(not _has_watchdog(), reason="watchdog is not installed")


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Complete exports: WA (passes), WB (fails), WC (passes), BAD (WD's export whose dose
    is cut in half) and WA2/RD.dcm (WA's dose re-exported with other content)."""
    root = tmp_path_factory.mktemp("staging")
    write_plan_export(root / "WA", replace(lung(PERIPHERAL, 3, 18), patient_id="WA"))
    write_plan_export(root / "WB", replace(lung(CENTRAL, 3, 18), patient_id="WB"))
    write_plan_export(root / "WC", replace(lung(PERIPHERAL, 3, 18), patient_id="WC"))
    (root / "WA2").mkdir()
    ds = pydicom.dcmread(root / "WA" / "RD.dcm")
    ds.DoseGridScaling = float(ds.DoseGridScaling) * 1.02  # same UIDs, 2 % more dose
    ds.save_as(root / "WA2" / "RD.dcm")
    write_plan_export(root / "BAD", replace(lung(PERIPHERAL, 3, 18), patient_id="WD"))
    dose = root / "BAD" / "RD.dcm"
    dose.write_bytes(dose.read_bytes()[: dose.stat().st_size // 2])
    assert (root / "WA2" / "RD.dcm").read_bytes() != (root / "WA" / "RD.dcm").read_bytes()
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its content."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def copy_slowly(src: Path, dst: Path, pause: float = 0.4) -> None:
    """Copy an export file by file: CT quickly, then RS, RP and the dose, the dose in two
    halves with a pause between them (a partial write)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted((src / "CT").iterdir()):
        (dst / "CT").mkdir(exist_ok=True)
        shutil.copyfile(f, dst / "CT" / f.name)
    for name in ("RS.dcm", "RP.dcm"):
        time.sleep(pause)
        shutil.copyfile(src / name, dst / name)
    data = (src / "RD.dcm").read_bytes()
    time.sleep(pause)
    with (dst / "RD.dcm").open("wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(pause)
        fh.write(data[len(data) // 2 :])


def events(out: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``out/watch.log``."""
    log = out / "watch.log"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


def count(out: Path, event: str, patient: str | None = None, folder: str | None = None) -> int:
    return sum(
        e["event"] == event
        and (patient is None or e["patient_id"] == patient)
        and (folder is None or e.get("folder") == folder)
        for e in events(out)
    )


def cli(*args: str | Path, block_watchdog: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rtcheck.cli.watch`` (optionally as if watchdog were not installed)."""
    code = "import sys, runpy\n"
    if block_watchdog:
        code += "sys.modules['watchdog'] = None\n"
    code += "sys.argv[0] = 'rtcheck'\nrunpy.run_module('rtcheck.cli.watch', run_name='__main__')\n"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@contextmanager
def watcher(root: Path, out: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real watcher process, started and (always) stopped."""
    starts = count(out, "started")
    with (out.parent / f"{out.name}.stderr").open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtcheck.cli.watch", "watch", str(root), "--out", str(out),
             "--settle", SETTLE, *extra],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
        )  # fmt: skip
    try:
        wait_for(lambda: count(out, "started") > starts or proc.poll() is not None)
        assert proc.poll() is None, (out.parent / f"{out.name}.stderr").read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)


def reports(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))


@needs_watchdog
def test_slow_copy_two_at_once_and_reexport(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    with watcher(root, out) as proc:
        copy_slowly(staging / "WA", root / "WA")
        assert count(out, "detected") == 0  # the copy never paused for the settle time
        wait_for(lambda: count(out, "checked", "WA") == 1)
        assert count(out, "waiting", folder="WA") == 1  # said once, not at every rescan
        assert reports(out) == [r for r in reports(out) if r.startswith("WA/")]
        assert len(reports(out)) == 1

        threads = [
            threading.Thread(target=copy_slowly, args=(staging / p, root / p, 0.2))
            for p in ("WB", "WC")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
        wait_for(lambda: count(out, "checked", "WB") == 1 and count(out, "checked", "WC") == 1)
        verdicts = {e["patient_id"]: e["verdict"] for e in events(out) if e["event"] == "checked"}
        assert verdicts == {"WA": "pass", "WB": "fail", "WC": "pass"}

        # Re-export of WA's plan with another dose: a new version, checked again.
        shutil.copyfile(staging / "WA2" / "RD.dcm", root / "WA" / "RD.dcm")
        before = tree_hashes(root)
        wait_for(lambda: count(out, "checked", "WA") == 2)
        assert count(out, "waiting", folder="WA") == 2  # the re-export: a new wait
        time.sleep(1.5)  # nothing more comes
        assert stop(proc) == 0
    assert tree_hashes(root) == before  # the watcher never writes into the export folder
    assert count(out, "checked") == 4 and count(out, "error") == 0
    assert count(out, "stopped") == 1
    assert len([r for r in reports(out) if r.startswith("WA/")]) == 2
    for e in events(out):
        assert set(e) >= {"ts", "event", "patient_id", "plan_uid", "verdict", "report"}
        assert "Synthetic" not in json.dumps(e)  # no patient names: IDs and UIDs only
        assert str(root) not in json.dumps(e)
        if e["event"] == "checked":
            assert (out / e["report"]).is_file()


@needs_watchdog
def test_corrupt_export_is_one_error_and_watching_goes_on(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    with watcher(root, out, "--polling"):
        shutil.copytree(staging / "BAD", root / "WD")
        # The truncated dose fails the folder's scan: an error naming the folder and why.
        wait_for(lambda: count(out, "error", folder="WD") == 1)
        time.sleep(2.5)  # more than the settle time: the error is not retried
        assert count(out, "error") == 1
        (error,) = [e for e in events(out) if e["event"] == "error"]
        assert error["reason"].startswith("WD/RD.dcm: truncated DICOM file")
        shutil.copytree(staging / "WC", root / "WC")
        wait_for(lambda: count(out, "checked", "WC") == 1)
    history = json.loads(cli("history", "--out", out, "--json").stdout)
    assert [(r["source"], r["verdict"]) for r in history] == [("WD", "error"), ("WC", "pass")]
    assert "RD.dcm" in history[0]["message"]
    assert history[0]["report"] is None


@needs_watchdog
def test_restart_neither_repeats_nor_misses(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    with watcher(root, out) as proc:
        shutil.copytree(staging / "WA", root / "WA")
        wait_for(lambda: count(out, "checked", "WA") == 1)
        assert stop(proc) == 0
    shutil.copytree(staging / "WB", root / "WB")  # arrives while the watcher is down
    with watcher(root, out):
        wait_for(lambda: count(out, "checked", "WB") == 1)
        time.sleep(1.5)
    assert count(out, "detected", "WA") == 1 and count(out, "checked", "WA") == 1
    assert count(out, "started") == 2


def test_once_exit_codes_without_watchdog(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    assert cli("watch", root, "--out", out, "--once", block_watchdog=True).returncode == 0
    shutil.copytree(staging / "WA", root / "WA")
    before = tree_hashes(root)
    args = ("watch", root, "--out", out, "--once", "--settle", SETTLE)
    started = time.monotonic()
    result = cli(*args, block_watchdog=True)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.5  # waited for the fresh files to settle
    assert cli(*args, block_watchdog=True).returncode == 0  # nothing new: nothing checked
    assert count(out, "checked", "WA") == 1
    shutil.copytree(staging / "WB", root / "WB")
    assert cli(*args, block_watchdog=True).returncode == 1
    shutil.copytree(staging / "BAD", root / "WD")
    assert cli(*args, block_watchdog=True).returncode == 3
    assert cli(*args, block_watchdog=True).returncode == 0
    assert count(out, "checked") == 2 and count(out, "error") == 1
    shutil.rmtree(root / "WB")
    shutil.rmtree(root / "WD")
    assert tree_hashes(root) == before

    continuous = cli("watch", root, "--out", out, block_watchdog=True)
    assert continuous.returncode == 2
    assert "rtcheck[watch]" in continuous.stderr


def test_once_with_the_shape_model_records_it_in_the_report(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    shutil.copytree(staging / "WA", root / "WA")
    args = ("watch", root, "--out", out, "--once", "--settle", "0", "--between-planes", "shape")
    result = cli(*args, block_watchdog=True)
    assert result.returncode == 0, result.stderr
    (report,) = sorted(out.glob("*/*.json"))
    assert json.loads(report.read_text("utf-8"))["between_planes"] == "shape"
    bad = cli("watch", root, "--out", out, "--once", "--between-planes", "spline")
    assert bad.returncode == 2


def test_usage_errors(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    inside = cli("watch", root, "--out", root / "out", "--once")
    assert inside.returncode == 2 and "never writes into the archive" in inside.stderr
    unknown = cli("watch", root, "--out", tmp_path / "out", "--once", "--protocol", "nope")
    assert unknown.returncode == 2
    assert cli("watch", tmp_path / "missing", "--out", tmp_path / "o", "--once").returncode == 3
    missing = cli("history", "--out", tmp_path / "nowhere")
    assert missing.returncode == 3 and "no ledger" in missing.stderr


def test_history(staging: Path, tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    for p in ("WA", "WB"):
        shutil.copytree(staging / p, root / p)
    assert cli("watch", root, "--out", out, "--once", "--settle", "0").returncode == 1
    table = cli("history", "--out", out)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["finished", "(UTC)", "patient"]
    assert len(lines) == 3 and "WA" in lines[1] and "pass" in lines[1] and "fail" in lines[2]
    assert "WA/LUNG_SABR-" in lines[1]
    only = json.loads(cli("history", "WB", "--out", out, "--json").stdout)
    assert len(only) == 1 and only[0]["verdict"] == "fail" and only[0]["plan_label"] == "LUNG_SABR"
    assert only[0]["report"].startswith("WB/") and (out / only[0]["report"]).is_file()
    assert {"version_key", "plan_uid", "started_utc", "finished_utc", "message"} <= set(only[0])
    empty = cli("history", "NOBODY", "--out", out)
    assert empty.returncode == 0 and "no checks recorded" in empty.stdout
