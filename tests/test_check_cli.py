"""`rtcheck check`, `rtcheck PATH` and `rtcheck protocols` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app, main
from rtcheck.dvh.core import DVH
from tests.fixtures.plans import write_plan_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

FIXTURE_PROTOCOLS = Path(__file__).parent / "fixtures" / "protocols"
SHIPPED = ("sabr-lung", "sabr-liver", "sabr-bone", "hn-locoregional-metastatic", "palliative")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def peripheral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plan_export(tmp_path_factory.mktemp("p") / "plan", lung(PERIPHERAL, 3, 18))


def test_report_json_schema(peripheral: Path) -> None:
    code, out, _ = run("check", peripheral, "--protocol", "sabr-lung", "--json", "-")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "rtcheck.report/1"
    assert set(doc["protocol"]) >= {"id", "version", "sha256"}
    assert len(doc["protocol"]["sha256"]) == 64
    assert set(doc["plan"]) >= {
        "label",
        "sop_instance_uid",
        "intent",
        "approval",
        "fractions",
        "dose_per_fraction_gy",
        "total_dose_gy",
        "prescription_source",
    }
    assert doc["plan"]["fractions"] == 3 and doc["plan"]["total_dose_gy"] == pytest.approx(54)
    facts = doc["facts"]
    assert set(facts) >= {
        "location",
        "distances_mm",
        "bed_gy",
        "eqd2_gy",
        "elective_volumes",
        "targets",
        "metastasis_count",
    }
    # BED10 of 3 x 18 Gy = 54 (1 + 18/10) = 151.2 Gy (clinical-rules.md section 4).
    assert facts["bed_gy"]["10"] == pytest.approx(151.2)
    assert facts["location"] == "peripheral"
    assert doc["structures"]["Bronchus"] == "Bronchus"
    for result in doc["results"]:
        assert set(result) >= {
            "id",
            "kind",
            "status",
            "structure",
            "metric",
            "measured",
            "limit",
            "message",
        }
    assert doc["verdict"] == "pass"


def test_table_shows_verdict_and_rules(peripheral: Path) -> None:
    code, out, _err = run("check", peripheral, "--protocol", "sabr-lung")
    assert code == 0
    assert "VERDICT: PASS" in out and "schedule-peripheral" in out
    assert "Location: peripheral" in out


def test_bare_path_means_check_auto(peripheral: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(peripheral), "--json", "-"])
    assert info.value.code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["protocol"]["id"] == "sabr-lung"
    assert "protocol sabr-lung selected" in captured.err


def test_bare_path_as_a_real_process(peripheral: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtcheck", str(peripheral)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "VERDICT: PASS" in proc.stdout


def test_fail_exits_one(tmp_path: Path) -> None:
    folder = write_plan_export(tmp_path / "plan", lung(CENTRAL, 3, 18))
    code, out, _ = run("check", folder, "--protocol", "sabr-lung")
    assert code == 1 and "VERDICT: FAIL" in out


def test_no_protocol_matches_exits_three(tmp_path: Path) -> None:
    # 12 fractions of a lung plan: no SABR (1-8) nor head-and-neck (15-40) protocol fits.
    folder = write_plan_export(tmp_path / "plan", lung(PERIPHERAL, 12, 4))
    code, _, err = run("check", folder)
    assert code == 3
    assert "no protocol matches this plan" in err


def test_missing_role_prevents_a_pass(tmp_path: Path) -> None:
    spec = lung(PERIPHERAL, 3, 18)
    spec = type(spec)(
        **{**spec.__dict__, "shapes": tuple(s for s in spec.shapes if s.name != "Heart")}
    )
    folder = write_plan_export(tmp_path / "plan", spec)
    code, out, _err = run("check", folder, "--protocol", "sabr-lung", "--json", "-")
    doc = json.loads(out)
    assert "Heart" in doc["missing_roles"]
    assert doc["verdict"] == "error" and code == 3
    # Without the heart, 'peripheral' cannot be concluded either.
    assert doc["facts"]["location"] is None


def test_institution_aliases(tmp_path: Path) -> None:
    folder = write_plan_export(tmp_path / "plan", lung(CENTRAL, 5, 8, bronchus="Arbre_B"))
    code, out, _ = run("check", folder, "--protocol", "sabr-lung", "--json", "-")
    assert json.loads(out)["verdict"] == "error"  # no ROI for the bronchial tree
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("Bronchus: [Arbre_B]\n")
    code, out, _ = run(
        "check", folder, "--protocol", "sabr-lung", "--aliases", aliases, "--json", "-"
    )
    doc = json.loads(out)
    assert code == 0 and doc["structures"]["Bronchus"] == "Arbre_B"
    bad = tmp_path / "bad.yaml"
    bad.write_text("Bronchi: [Arbre_B]\n")
    code, _, err = run("check", folder, "--protocol", "sabr-lung", "--aliases", bad)
    assert code == 2 and "does not define" in err


def test_protocols_list_show_validate_schema(tmp_path: Path) -> None:
    code, out, _ = run("protocols", "list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == sorted(SHIPPED)
    code, out, _ = run("protocols", "show", "sabr-lung")
    assert code == 0 and "tg101" in out and "Decisions:" in out
    code, out, _ = run("protocols", "validate", FIXTURE_PROTOCOLS / "alderson-pelvis.yaml")
    assert code == 0 and ": ok (" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "id: x\ntitle: t\nversion: 1\nsources: {a: b}\nrules:\n"
        "  - {id: r, kind: dose_volume, structure: X, metric: 'D95[Gy]', max: 1}\n"
    )
    code, _, err = run("protocols", "validate", broken)
    assert code == 2 and f"{broken}:6:" in err
    code, out, _ = run("protocols", "schema")
    schema = json.loads(out)
    assert schema["title"] == "rtcheck protocol"
    code, _, err = run("check", tmp_path, "--protocol", "no-such-protocol")
    assert code in (2, 3)


@pytest.mark.shared_data
def test_alderson_against_its_protocol(shared_data: Path) -> None:
    # The protocol (tests/fixtures/protocols/alderson-pelvis.yaml) was written from CHHiP
    # and ICRU before the plan was checked; its header states the expected outcome: every
    # rule passes except 'approved' (the export is UNAPPROVED), a minor deviation.
    folder = shared_data / "alderson-raystation"
    protocol = FIXTURE_PROTOCOLS / "alderson-pelvis.yaml"
    code, out, _ = run("check", folder, "--protocol", protocol, "--json", "-")
    doc = json.loads(out)
    minors = [r["id"] for r in doc["results"] if r["status"] == "minor"]
    assert minors == ["integrity.approved"]
    assert {r["status"] for r in doc["results"]} <= {"pass", "minor"}
    assert doc["verdict"] == "pass" and code == 0
    assert doc["plan"]["fractions"] == 20 and doc["plan"]["total_dose_gy"] == pytest.approx(60)
    code, _, _ = run("check", folder, "--protocol", protocol, "--strict")
    assert code == 1


def test_between_planes_reaches_the_rules(
    peripheral: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rtcheck.analysis
    import rtcheck.dvh.kernel

    models: list[str] = []
    real = rtcheck.analysis.compute_dvh

    def spy(*args: Any, **kwargs: Any) -> DVH:
        models.append(kwargs["between_planes"])
        return real(*args, **kwargs)

    monkeypatch.setattr(rtcheck.analysis, "compute_dvh", spy)
    base = ("check", peripheral, "--protocol", "sabr-lung")
    code, out, _ = run(*base, "--json", "-")
    assert code == 0 and json.loads(out)["between_planes"] == "shape"  # the default
    assert json.loads(out)["dvh_kernel"] == ("C" if rtcheck.dvh.kernel.built() else "NumPy")
    assert models and set(models) == {"shape"}
    models.clear()
    code, out, _ = run(*base, "--between-planes", "slab", "--json", "-")
    assert code == 0 and json.loads(out)["between_planes"] == "slab"
    assert models and set(models) == {"slab"}
    _, table, _ = run(*base, "--between-planes", "slab")
    assert "VERDICT: PASS (DVHs: slab model between planes)" in table
