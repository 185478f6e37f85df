"""Safe YAML loading that remembers where every value came from.

Protocol errors must name ``file:line:column``. PyYAML's safe composer gives nodes with
their marks; this module turns them into plain Python values (dicts, lists, strings,
numbers, booleans, None) while recording the position of every value by its path, so the
validator can point at the exact place of a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rtcheck.errors import ProtocolError

#: A path into the document: mapping keys and list indices.
PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """A YAML document as plain values, plus the position of each value."""

    file: str
    value: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at ``path`` (or of its key)."""
        table = self.key_marks if key else self.marks
        probe = path
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (1, 1))

    def error(self, path: PathKey, message: str, *, key: bool = False) -> ProtocolError:
        """A :class:`ProtocolError` located at ``path``."""
        line, column = self.where(path, key=key)
        return ProtocolError(message, self.file, line, column)


def load_yaml(text: str, file: str) -> Located:
    """Parse YAML text safely (no Python tags, no anchors to arbitrary objects).

    Raises
    ------
    ProtocolError
        On a YAML syntax error, a duplicate key or a non-string key.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise ProtocolError(
            f"YAML syntax error: {exc.problem or exc}", file, line, column
        ) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"YAML error: {exc}", file, 1, 1) from None
    doc = Located(file=file, value=None)
    if node is None:
        raise ProtocolError("the file is empty", file, 1, 1)
    doc.value = _convert(node, (), doc)
    return doc


def load_yaml_file(path: Path) -> Located:
    """Read and parse a YAML file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read the file ({exc})", str(path), 1, 1) from None
    return load_yaml(text, str(path))


_CONSTRUCTOR = yaml.SafeLoader("")


def _convert(node: yaml.Node, path: PathKey, doc: Located) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    expected = {"MappingNode": "tag:yaml.org,2002:map", "SequenceNode": "tag:yaml.org,2002:seq"}
    kind = type(node).__name__
    if kind in expected and node.tag != expected[kind]:
        raise doc.error(path, f"unsupported value: tag {node.tag} is not allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise doc.error(path, "mapping keys must be plain names")
            key = key_node.value
            child = (*path, key)
            if key in out:
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise ProtocolError(f"duplicate key '{key}'", doc.file, line, column)
            doc.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode):
        try:
            return _CONSTRUCTOR.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise doc.error(path, f"unsupported value: {exc.problem}") from None
    raise doc.error(path, "unsupported YAML node")
