"""Safe YAML loading that remembers where every value came from.

Protocol errors must name ``file:line:column``. PyYAML's safe composer gives nodes with
their marks; this module turns them into plain Python values (dicts, lists, strings,
numbers, booleans, None) while recording the position of every value by its path, so the
validator can point at the exact place of a mistake.

A protocol or alias file is a few kilobytes of plain data, so anything far beyond that is
refused before it can exhaust time or memory, each as a :class:`ProtocolError` located at
``file:line:column``: a file that is not a regular file (a device such as ``/dev/zero``,
a FIFO, a folder), more than :data:`MAX_BYTES` bytes, nesting deeper than
:data:`MAX_DEPTH` levels, more than :data:`MAX_NODES` values once every alias is expanded
(a "billion laughs" alias bomb is refused while it is composed, before it is expanded), an
alias used inside its own anchor (``&a [*a]``), and an integer beyond the range of a float.

The text is scanned and parsed by libyaml when PyYAML has it (about ten times faster than
PyYAML's pure-Python parser: loading the five shipped protocols took 0.25 s of every
``rtcheck check``), and composed by this module's bounded composer in both cases; an
invalid text is read again by the pure-Python parser so that its error reads the same.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from rtcheck.errors import ProtocolError

#: A path into the document: mapping keys and list indices.
PathKey = tuple[str | int, ...]

#: Largest protocol or alias file read, in bytes (the shipped protocols are 15-37 kB).
MAX_BYTES = 1 << 20
#: Deepest nesting of lists and mappings (the shipped protocols have 7 levels).
MAX_DEPTH = 64
#: Most values (scalars, lists, mappings) in a document once aliases are expanded (the
#: shipped protocols have at most 1 700).
MAX_NODES = 100_000


@dataclass
class Located:
    """A YAML document as plain values, plus the position of each value."""

    file: str
    value: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    #: SHA-256 (hex) of the bytes read, when the document came from a file.
    sha256: str = ""

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
        On a YAML syntax error, a duplicate key or a non-string key, and on a document
        beyond the limits of the module notes (size, depth, expanded values, a recursive
        alias, an integer too large for a float).
    """
    if len(text) > MAX_BYTES:
        raise ProtocolError(
            f"the text is {len(text)} characters long, more than the {MAX_BYTES} a protocol "
            "or alias file may have (they are a few kB): give the right file",
            file,
            1,
            1,
        )
    try:
        node = _compose(text)
    except _LimitExceeded as exc:
        raise ProtocolError(str(exc), file, exc.mark.line + 1, exc.mark.column + 1) from None
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


def _compose(text: str) -> yaml.Node | None:
    """The document's node tree, composed within the limits of the module notes.

    libyaml parses; when it finds the text invalid, the pure-Python parser reads it again,
    so that errors are worded and located the same with or without libyaml (libyaml, for
    one, refuses 1 000 nested lists where rtcheck's own limit of 64 is the better message).
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        if _BoundedLoader is _PythonBoundedLoader:
            raise
    finally:
        loader.dispose()
    python_loader = _PythonBoundedLoader(text)
    try:
        return python_loader.get_single_node()
    finally:
        python_loader.dispose()


def load_yaml_file(path: Path) -> Located:
    """Read and parse a YAML file; errors name the file.

    Only a regular file is read (a device, a FIFO or a folder is refused without reading
    it), and at most :data:`MAX_BYTES` bytes of it.

    Raises
    ------
    ProtocolError
        At ``file:1:1`` when the file cannot be read, is not a regular file or is larger
        than :data:`MAX_BYTES`; at the line of its first byte that is not UTF-8; otherwise
        as :func:`load_yaml`.
    """
    data = read_limited(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ProtocolError(
            f"the file is not UTF-8 text (byte {exc.start}): save it as UTF-8", str(path), line, 1
        ) from None
    doc = load_yaml(text, str(path))
    doc.sha256 = hashlib.sha256(data).hexdigest()
    return doc


def read_limited(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    The file is opened without blocking and checked on the open descriptor, so a FIFO, a
    device (``/dev/zero``) or a folder is refused before anything is read, and the read
    stops after ``limit + 1`` bytes, whatever the file claims its size to be.

    Raises
    ------
    ProtocolError
        At ``file:1:1``: the file cannot be opened, is not a regular file or is larger
        than ``limit`` bytes.
    """
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ProtocolError(f"cannot read the file ({exc.strerror or exc})", name, 1, 1) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a folder" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
            raise ProtocolError(f"not a regular file ({what}): give a YAML file", name, 1, 1)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ProtocolError(f"cannot read the file ({exc.strerror or exc})", name, 1, 1) from None
    finally:
        os.close(fd)
    if size > limit:
        raise ProtocolError(
            f"the file is larger than {limit} bytes; a protocol or alias file is a few kB: "
            "give the right file",
            name,
            1,
            1,
        )
    return b"".join(chunks)


class _LimitExceeded(Exception):
    """A document beyond a limit of this module, at a YAML mark."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's composer with limits on depth, expanded size and recursive aliases.

    Each composed node's expanded size (values counted as if every alias were copied
    out) and height are kept by node identity, so an alias costs what it stands for: an
    alias bomb is refused when its expansion would pass :data:`MAX_NODES`, after
    composing only its few hundred actual nodes. The events come from the parser it is
    combined with (see :data:`_BoundedLoader`).
    """

    if TYPE_CHECKING:  # provided by the parser the composer is combined with

        def peek_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._open: set[str] = set()
        self._size: dict[int, int] = {}
        self._height: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise _LimitExceeded(
                f"alias *{event.anchor} is used inside its own anchor &{event.anchor}: "
                "a value cannot contain itself",
                event.start_mark,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(
                f"lists and mappings nested deeper than {MAX_DEPTH} levels; a protocol needs a few",
                event.start_mark,
            )
        anchor = None if isinstance(event, yaml.AliasEvent) else event.anchor
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if node is None:
            return None
        key = id(node)
        if key not in self._size:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            self._size[key] = 1 + sum(self._size.get(id(c), 1) for c in children)
            self._height[key] = 1 + max((self._height.get(id(c), 1) for c in children), default=0)
        if self._depth + self._height[key] > MAX_DEPTH:
            raise _LimitExceeded(
                f"lists and mappings nested deeper than {MAX_DEPTH} levels once aliases are "
                "expanded; a protocol needs a few",
                event.start_mark,
            )
        if self._size[key] > MAX_NODES:
            raise _LimitExceeded(
                f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?); "
                "a protocol has a few hundred",
                event.start_mark,
            )
        return node


class _PythonBoundedLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    _BoundedComposer,
    yaml.resolver.Resolver,
):
    """The bounded composer on PyYAML's pure-Python reader, scanner and parser."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _BoundedComposer.__init__(self)
        yaml.resolver.Resolver.__init__(self)


class _Loader(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...

    def dispose(self) -> None: ...


#: The loader :func:`load_yaml` uses: libyaml's scanner and parser when PyYAML was built
#: with it, the pure-Python ones otherwise; the bounded composer in both.
_BoundedLoader: Callable[[str], _Loader] = _PythonBoundedLoader

try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass
else:

    class _LibyamlBoundedLoader(_BoundedComposer, CParser, yaml.resolver.Resolver):
        """The bounded composer on libyaml's scanner and parser (C, ~10x faster).

        The bounded composer comes first, so nodes are composed by it from libyaml's
        events (libyaml's own composer, which has no limits, is never used).
        """

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _BoundedLoader = _LibyamlBoundedLoader


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
            value = _CONSTRUCTOR.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise doc.error(path, f"unsupported value: {exc.problem}") from None
        except (ValueError, OverflowError):  # e.g. an integer beyond int's digit limit
            value = None
            if node.tag != "tag:yaml.org,2002:int":
                raise doc.error(path, f"unsupported value: {node.value[:40]!r}") from None
        if node.tag == "tag:yaml.org,2002:int" and (
            value is None or abs(value) > sys.float_info.max
        ):
            digits = sum(c.isdigit() for c in node.value)
            raise doc.error(
                path,
                f"number too large ({digits} digits): protocol values are doses, volumes "
                "and counts; write the intended number",
            )
        return value
    raise doc.error(path, "unsupported YAML node")
