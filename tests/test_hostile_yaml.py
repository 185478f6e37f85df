"""Hostile protocol and alias files: each refused as ``file:line:column``, exit 2, quickly.

Every case goes through the real command line: ``rtcheck protocols validate FILE`` for
protocol files and ``rtcheck batch ROOT --out OUT --aliases FILE`` for alias files (the
batch reads its alias file before it looks at ROOT). The alias bomb runs in a child
process whose address space is capped, so that a broken guard ends in a MemoryError of
that child instead of taking gigabytes from the test machine.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.structures import load_aliases
from rtcheck.constraints.yamlsource import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml
from rtcheck.errors import ProtocolError

REPO = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """A "billion laughs" document: ``fan_out ** levels`` strings once expanded."""
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


# (case, text, line, column, message fragment): the problem is always on line 2 or 3,
# after an innocent first line, so the line number shows the error is located.
HOSTILE = [
    (
        "recursive-alias",
        "id: hostile\nroles: &a [*a]\n",
        2,
        12,
        "alias *a is used inside its own anchor &a",
    ),
    (
        "20000-nested-lists",
        "id: hostile\nrules: " + "[" * 20_000 + "]" * 20_000 + "\n",
        2,
        8 + MAX_DEPTH - 1,
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    (
        "3000-nested-mappings",
        "id: hostile\nrules: " + "{a: " * 3_000 + "1" + "}" * 3_000 + "\n",
        2,
        8 + 4 * (MAX_DEPTH - 2) + 1,  # the key of the 63rd mapping, 65 levels down
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    (
        "400-digit-integer",
        "id: hostile\nversion: '1'\nfractions: " + "9" * 400 + "\n",
        3,
        12,
        "number too large (400 digits)",
    ),
    (
        "5000-digit-integer",
        "id: hostile\nversion: '1'\nfractions: -" + "7" * 5_000 + "\n",
        3,
        12,
        "number too large (5000 digits)",
    ),
    (
        "deep-through-an-alias",
        "a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n",
        2,
        44,
        f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
    ),
]


def run(*args: str | Path) -> tuple[int, str]:
    """``rtcheck ARGS`` through the real app: exit code and stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    return result.exit_code, result.stderr


def validate(file: Path) -> tuple[int, str]:
    return run("protocols", "validate", file)


def batch_with_aliases(file: Path, tmp_path: Path) -> tuple[int, str]:
    root = tmp_path / "archive"
    root.mkdir(exist_ok=True)
    return run("batch", root, "--out", tmp_path / "out", "--aliases", file)


def assert_refused(
    code: int, stderr: str, file: Path, line: int, column: int, fragment: str
) -> None:
    assert code == 2, stderr
    assert f"error: {file}:{line}:{column}: " in stderr, stderr
    assert fragment in stderr, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr


@pytest.mark.parametrize(("case", "text", "line", "column", "fragment"), HOSTILE)
def test_hostile_protocol_is_a_located_usage_error(
    case: str, text: str, line: int, column: int, fragment: str, tmp_path: Path
) -> None:
    file = tmp_path / f"{case}.yaml"
    file.write_text(text, encoding="utf-8")
    assert_refused(*validate(file), file, line, column, fragment)


@pytest.mark.parametrize(("case", "text", "line", "column", "fragment"), HOSTILE)
def test_hostile_alias_file_is_a_located_usage_error(
    case: str, text: str, line: int, column: int, fragment: str, tmp_path: Path
) -> None:
    file = tmp_path / f"{case}-aliases.yaml"
    file.write_text(text, encoding="utf-8")
    assert_refused(*batch_with_aliases(file, tmp_path), file, line, column, fragment)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """9 levels of 9 aliases (387 million strings once expanded) is refused at the first
    level that passes MAX_NODES (``l5`` on line 6: 9**5 strings in 7 381 lists), in a child
    process that could not allocate more than 1 GiB anyway."""
    file = tmp_path / "bomb.yaml"
    file.write_text(alias_bomb(), encoding="utf-8")
    aliases = tmp_path / "bomb-aliases.yaml"
    aliases.write_text(alias_bomb(), encoding="utf-8")
    (tmp_path / "archive").mkdir()
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from rtcheck.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    for args in (
        ["protocols", "validate", str(file)],
        ["batch", str(tmp_path / "archive"), "--out", str(tmp_path / "out"), "--aliases",
         str(aliases)],
    ):  # fmt: skip
        child = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
        target = args[2] if args[0] == "protocols" else str(aliases)
        assert_refused(
            child.returncode, child.stderr, Path(target), 6, 5, f"more than {MAX_NODES} values"
        )


def test_alias_bomb_below_the_bound_is_read(tmp_path: Path) -> None:
    """The bound is on expanded values, not on aliases: 5 levels of 8 (32 768 strings in
    4 681 lists, twice over with ``l4``) loads."""
    doc = load_yaml(alias_bomb(5, 8), "small-bomb.yaml")
    assert len(doc.value["l5"]) == 8
    assert len(_leaves(doc.value["l5"])) == 8**5


def _leaves(value: object) -> list[object]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_ordinary_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    file = tmp_path / "aliases.yaml"
    file.write_text("Lung: &lungs [Lungs, Lung_Total]\nLungs: *lungs\n", encoding="utf-8")
    assert load_aliases(file) == {
        "Lung": ("Lungs", "Lung_Total"),
        "Lungs": ("Lungs", "Lung_Total"),
    }


def _special_files(tmp_path: Path) -> list[tuple[str, Path, str]]:
    """(case, path, message fragment) of files that are not a few kB of regular file."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    huge = tmp_path / "huge.yaml"
    with huge.open("w", encoding="utf-8") as fh:  # valid YAML, one byte over the cap
        fh.write("# " + "x" * (MAX_BYTES - 3) + "\n")
        fh.write("a")
    assert huge.stat().st_size == MAX_BYTES + 1
    sparse = tmp_path / "sparse.yaml"  # claims 8 GiB, holds nothing: only MAX_BYTES+1 read
    with sparse.open("wb") as fh:
        fh.truncate(8 << 30)
    return [
        ("dev-zero", Path("/dev/zero"), "not a regular file (a device, FIFO or socket)"),
        ("fifo", fifo, "not a regular file (a device, FIFO or socket)"),
        ("folder", folder, "not a regular file (a folder)"),
        ("huge", huge, f"larger than {MAX_BYTES} bytes"),
        ("sparse", sparse, f"larger than {MAX_BYTES} bytes"),
    ]


def test_endless_and_special_alias_files_are_refused(tmp_path: Path) -> None:
    """/dev/zero, a FIFO nobody writes to (reading it would block forever), a folder, a
    file one byte over 1 MiB and an 8 GiB sparse file, given as --aliases: exit 2, at once."""
    for case, path, fragment in _special_files(tmp_path):
        code, stderr = batch_with_aliases(path, tmp_path)
        assert_refused(code, stderr, path, 1, 1, fragment)
        assert case  # named in the assertion's traceback


def test_endless_and_special_protocol_files_are_refused(tmp_path: Path) -> None:
    """The same files given to ``protocols validate``. The 8 GiB sparse file is left out:
    ``load_protocol`` (protocol.py) reads the whole file for its sha256 before parsing;
    see docs/reliability.md."""
    for case, path, fragment in _special_files(tmp_path):
        if case == "sparse":
            continue
        code, stderr = validate(path)
        assert_refused(code, stderr, path, 1, 1, fragment)


def test_not_utf8_is_located(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(b"id: x\ntitle: caf\xe9\n")
    code, stderr = validate(file)
    assert_refused(code, stderr, file, 2, 1, "not UTF-8 text")


def test_limits_in_the_library_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match=re.escape("<text>:1:1: the text is")):
        load_yaml("#" * (MAX_BYTES + 1), "<text>")
    with pytest.raises(ProtocolError, match=r"^x\.yaml:1:4: number too large \(309 digits\)"):
        load_yaml("a: " + "9" * 309, "x.yaml")
    assert load_yaml("a: " + "9" * 308, "x.yaml").value["a"] == int("9" * 308)
    with pytest.raises(ProtocolError, match=r"^x\.yaml:1:4: number too large"):
        load_yaml("a: 0x" + "f" * 300, "x.yaml")


def test_libyaml_and_python_parsers_give_the_same_values_and_positions() -> None:
    # Every shipped protocol: libyaml (when present) only makes parsing faster; the
    # values and the file:line:column of every value are those of the pure-Python parser.
    import yaml

    from rtcheck.constraints import yamlsource
    from rtcheck.constraints.registry import shipped_protocol_files

    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML without libyaml: only the pure-Python parser exists")
    assert yamlsource._BoundedLoader is not yamlsource._PythonBoundedLoader
    for path in shipped_protocol_files().values():
        text = path.read_text(encoding="utf-8")
        fast = yamlsource.load_yaml(text, str(path))
        saved = yamlsource._BoundedLoader
        yamlsource._BoundedLoader = yamlsource._PythonBoundedLoader
        try:
            slow = yamlsource.load_yaml(text, str(path))
        finally:
            yamlsource._BoundedLoader = saved
        assert fast.value == slow.value
        assert fast.marks == slow.marks
        assert fast.key_marks == slow.key_marks
        assert len(fast.marks) > 100
