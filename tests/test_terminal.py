"""The terminal speaks plainly (issue 12): fits the terminal's width, colour only on a
terminal that wants it, the verdict last, help in words a person reads."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rtcheck.cli.main as cli
from rtcheck.cli.main import app
from rtcheck.constraints.engine import check_plan
from rtcheck.constraints.registry import resolve_protocol
from rtcheck.dicom_io import load_path
from rtcheck.reports.check import format_report
from tests.fixtures.plans import write_plan_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def palliative_lung(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A palliative 3 x 18 Gy central lung plan: 50 rules, long ids, long reasons."""
    spec = replace(lung(CENTRAL, 3, 18), intent="PALLIATIVE")
    return write_plan_export(tmp_path_factory.mktemp("terminal") / "plan", spec)


@pytest.mark.parametrize("columns", [100, 80])
def test_no_line_is_wider_than_the_terminal(palliative_lung: Path, columns: int) -> None:
    result = CliRunner().invoke(app, ["check", str(palliative_lung)], env={"COLUMNS": str(columns)})
    assert result.exit_code in (0, 1), result.output
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > columns]
    assert not too_long, too_long
    assert lines[-1].startswith("VERDICT: ")
    header = next(line for line in lines if line.startswith("STATUS"))
    assert header.split() == ["STATUS", "RULE", "STRUCTURE", "CHECK"]
    # Each measured value with its metric (units) and limit, e.g. 'V95%[%] 100 >= 95 %'.
    assert any(re.search(r"V95%\[%\] [0-9.]+ >= 95 %", line) for line in lines)


def _in_a_terminal(args: list[str], columns: int) -> str:
    """What ``python -m rtcheck ARGS`` shows in a real (pseudo-)terminal ``columns`` wide:
    standard output and standard error both on the terminal, as a person sees them."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rtcheck", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) in (0, 1)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [100, 80])
def test_warnings_too_fit_a_real_terminal(tmp_path: Path, columns: int) -> None:
    # On a terminal the warnings on standard error wrap as the report does (the demo
    # plan's warning about uncontoured mediastinal organs is 169 columns on one line).
    folder = write_plan_export(tmp_path / "plan", lung(PERIPHERAL, 3, 18))
    text = _in_a_terminal(["check", str(folder), "--protocol", "sabr-lung"], columns)
    lines = text.splitlines()
    assert any(line.startswith("warning: ") for line in lines), text
    too_long = [line for line in lines if len(line) > columns]
    assert not too_long, too_long
    assert lines[-1].startswith("VERDICT: ")


def test_colour_only_when_asked(palliative_lung: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = check_plan(load_path(palliative_lung), resolve_protocol("palliative"))
    plain = format_report(result)
    painted = format_report(result, colour=True)
    assert not ANSI.search(plain)
    assert "\x1b[32mPASS" in painted
    assert ANSI.sub("", painted) == plain
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cli._colour()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli._colour()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not cli._colour()


def test_shortcut_to_a_missing_folder_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["/missing/folder/for/rtcheck"])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "/missing/folder/for/rtcheck" in err and "not found" in err
    assert "No such command" not in err


def test_help_speaks_plainly() -> None:
    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"}).stdout
    assert "rtcheck FOLDER" in top
    check = CliRunner().invoke(app, ["check", "--help"], env={"COLUMNS": "100"}).stdout
    for code in ("0 pass", "1 fail", "2 usage", "3 the plan cannot be evaluated", "4 internal"):
        assert code in " ".join(check.split()), code
    for command in (["dvh"], ["check"], ["batch"], ["watch"], ["history"], ["demo"]):
        text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"}).stdout
        options = [line for line in text.splitlines() if line.lstrip().startswith("--")]
        assert options, command
        for line in options:
            assert not re.search(r"<(list\[|int range|float range|str>|path>)", line), line


#: Every command and subcommand of rtcheck, with the usage line its help must print.
HELP_USAGE = {
    (): "rtcheck [OPTIONS] COMMAND [ARGS]...",
    ("dvh",): "rtcheck dvh [OPTIONS] [FOLDER]",
    ("check",): "rtcheck check [OPTIONS] [FOLDER]",
    ("demo",): "rtcheck demo [OPTIONS]",
    ("batch",): "rtcheck batch [OPTIONS] ROOT",
    ("watch",): "rtcheck watch [OPTIONS] EXPORT_DIR",
    ("history",): "rtcheck history [OPTIONS] [PATIENT_ID]",
    ("serve",): "rtcheck serve [OPTIONS]",
    ("protocols",): "rtcheck protocols [OPTIONS] COMMAND [ARGS]...",
    ("protocols", "list"): "rtcheck protocols list [OPTIONS]",
    ("protocols", "show"): "rtcheck protocols show [OPTIONS] ID|FILE",
    ("protocols", "validate"): "rtcheck protocols validate [OPTIONS] FILE...",
    ("protocols", "schema"): "rtcheck protocols schema [OPTIONS]",
}

#: What Typer writes by default and a person does not read: Python type names after an
#: argument or option (``FOLDER <path>``, ``FILE... <list[Path]>``, ``<int range>``,
#: ``<slab|shape>``), braces around required arguments (``{ROOT}``), ranges as ``x>=1``,
#: and upper-case type names in brackets (``[PATH]``, ``[INTEGER]``).
TYPE_NAMES = re.compile(
    r"<(path|int|float|str|list|bool|text|choice|slab|shape)\b|\{[A-Z_|.]+\}|\bx\s*[<>]=|"
    r"\[(PATH|INTEGER|FLOAT|TEXT|BOOLEAN|FILENAME|DIRECTORY|INTEGER RANGE|FLOAT RANGE)\]"
)


@pytest.mark.parametrize("command", list(HELP_USAGE), ids=lambda c: " ".join(c) or "rtcheck")
def test_every_help_names_things_as_people_read_them(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"Usage: {HELP_USAGE[command]}\n" in text
    assert not TYPE_NAMES.search(text), TYPE_NAMES.findall(text)
    # Arguments are listed by their metavar alone, e.g. "  FOLDER  Export folder ...".
    lines = text.splitlines()
    if "Arguments:" in lines:
        first = lines[lines.index("Arguments:") + 1].split()
        assert first[0] == HELP_USAGE[command].split()[-1].strip("[]"), first
        assert not first[1].startswith("<"), first


def test_help_ranges_and_choices_in_words() -> None:
    batch = " ".join(CliRunner().invoke(app, ["batch", "--help"]).stdout.split())
    assert "--workers N Processes of the local pool (default: one per CPU). [1 or more]" in batch
    assert "--between-planes shape|slab" in batch
    watch = " ".join(CliRunner().invoke(app, ["watch", "--help"]).stdout.split())
    assert "[default: 10.0; 0 or more]" in watch
    # The check itself, on a help that still had them: the pattern finds Typer's defaults.
    for typer_default in ("FOLDER <path>", "FILE... <list[Path]>", "{ROOT}", "[x>=1]", "[PATH]"):
        assert TYPE_NAMES.search(typer_default), typer_default
