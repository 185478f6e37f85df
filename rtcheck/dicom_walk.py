"""Is a DICOM file complete? A walk over its element headers, without decoding values.

pydicom reads a file cut short (an interrupted copy or export) without complaint when
the cut falls inside a sequence: it returns the items it could read, and an RTSTRUCT
then simply lacks its last ROIs' contours. :func:`find_truncation` walks the encoded
elements -- tag, VR and length -- and follows every length to the end of the file, so a
length that runs past the end, or a sequence of undefined length that never meets its
delimiter, is found wherever it is.

Defined lengths are skipped with a seek, so a file written with defined lengths (as
pydicom and most planning systems write) costs a few dozen header reads; sequences of
undefined length are walked item by item.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

#: Explicit-VR VRs with a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


class _Cut(Exception):
    """The walk ran past the end of the file."""


def find_truncation(path: str | Path) -> str | None:
    """Where a DICOM Part 10 file is cut short, or None when its encoding is complete.

    Parameters
    ----------
    path
        The file. Files without the Part 10 preamble and deflated transfer syntaxes are
        not walked (None).

    Returns
    -------
    str or None
        A description such as ``"element (3006,0039) needs 57398 bytes at byte 1372,
        the file ends at byte 50175"``.
    """
    with open(path, "rb") as fp:
        size = fp.seek(0, 2)
        fp.seek(0)
        head = fp.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            return None
        walker = _Walker(fp, size)
        try:
            syntax = walker.meta()
            if syntax in _DEFLATED:
                return None
            walker.little = syntax != _EXPLICIT_BE
            # As pydicom does: the first element tells explicit from implicit VR, whatever
            # the transfer syntax claims.
            walker.implicit = not walker.looks_explicit()
            walker.dataset(size)
        except _Cut as cut:
            return str(cut)
    return None


class _Walker:
    def __init__(self, fp: BinaryIO, size: int) -> None:
        self.fp, self.size = fp, size
        self.little, self.implicit = True, False
        self.last_tag = 0  # the last top-level element's tag (tags ascend)

    def _read(self, n: int, what: str) -> bytes:
        at = self.fp.tell()
        data = self.fp.read(n)
        if len(data) < n:
            raise _Cut(f"{what} at byte {at} is cut off: the file ends at byte {self.size}")
        return data

    def _skip(self, n: int, what: str) -> None:
        at = self.fp.tell()
        if at + n > self.size:
            raise _Cut(f"{what} needs {n} bytes at byte {at}, the file ends at byte {self.size}")
        self.fp.seek(n, 1)

    def meta(self) -> str:
        """Walk the file meta group (explicit VR little endian); the transfer syntax."""
        syntax = ""
        while True:
            at = self.fp.tell()
            peek = self.fp.read(2)
            self.fp.seek(at)
            if len(peek) < 2 or struct.unpack("<H", peek)[0] != 0x0002:
                return syntax
            if self.looks_explicit():
                group, element, _vr, length = self._header_explicit(True)
            else:  # a meta group written in implicit VR, which pydicom accepts
                group, element, length = struct.unpack("<HHL", self._read(8, "an element"))
            value = self._read(length, f"element ({group:04X},{element:04X})")
            if element == 0x0010:
                syntax = value.rstrip(b"\0 ").decode("ascii", "replace")

    def looks_explicit(self) -> bool:
        """Whether the next element carries a VR (two upper-case letters after its tag)."""
        at = self.fp.tell()
        peek = self.fp.read(6)
        self.fp.seek(at)
        return len(peek) == 6 and peek[4:6].isalpha() and peek[4:6].isupper()

    def _header_explicit(self, little: bool) -> tuple[int, int, bytes, int]:
        order = "<" if little else ">"
        group, element = struct.unpack(order + "HH", self._read(4, "an element tag"))
        if group == 0xFFFE:
            (length,) = struct.unpack(order + "L", self._read(4, "an item length"))
            return group, element, b"", length
        vr = self._read(2, f"the VR of ({group:04X},{element:04X})")
        if vr in _LONG_VRS:
            (length,) = struct.unpack(order + "2xL", self._read(6, "an element length"))
        else:
            (length,) = struct.unpack(order + "H", self._read(2, "an element length"))
        return group, element, vr, length

    def _header(self) -> tuple[int, int, bytes, int]:
        if self.implicit:
            order = "<" if self.little else ">"
            group, element, length = struct.unpack(order + "HHL", self._read(8, "an element"))
            return group, element, b"", length
        return self._header_explicit(self.little)

    def dataset(self, end: int) -> None:
        """Walk elements up to byte ``end`` (or an item delimiter, for ``end`` < 0)."""
        while (self.fp.tell() < end) if end >= 0 else True:
            if end == self.size and self.size - self.fp.tell() < 8:
                at = self.fp.tell()
                rest = self.fp.read()
                if self._starts_a_header(rest):
                    raise _Cut(
                        f"the element header at byte {at} is cut off after {len(rest)} "
                        f"byte(s): the file ends at byte {self.size}"
                    )
                return  # a few stray bytes after the last element: padding, not a cut
            group, element, vr, length = self._header()
            if end == self.size:
                self.last_tag = (group << 16) | element
            tag = f"({group:04X},{element:04X})"
            if group == 0xFFFE:
                if element == _ITEM_END and end < 0:
                    return
                if element == _SEQUENCE_END:
                    continue  # a stray delimiter after a defined-length sequence
                raise _Cut(f"unexpected delimiter {tag} at byte {self.fp.tell() - 8}")
            if length == _UNDEFINED:
                # The items of an unknown (UN) sequence are encoded in implicit VR.
                saved = self.implicit
                self.implicit = saved or vr == b"UN"
                self.items(tag)
                self.implicit = saved
            else:
                self._skip(length, f"element {tag}")

    def _starts_a_header(self, rest: bytes) -> bool:
        """Whether the few bytes (fewer than 8) after the last top-level element are the
        start of the next element's header, cut off, rather than stray padding.

        They are when they are not all null or space and begin with a group number (two
        bytes or more: a tag, four bytes or more) that can follow the last element's, as
        data element tags ascend; a single byte, or a group such as FFFF, cannot tell.
        """
        if len(rest) < 2 or not rest.strip(b"\0 "):
            return False
        order = "<" if self.little else ">"
        (group,) = struct.unpack(order + "H", rest[:2])
        if group >= 0xFFFE or group < self.last_tag >> 16:
            return False
        if len(rest) >= 4:
            (element,) = struct.unpack(order + "H", rest[2:4])
            return bool(((group << 16) | element) > self.last_tag)
        return True

    def items(self, tag: str) -> None:
        """Walk the items of a sequence (or encapsulated pixel data) of undefined length."""
        while True:
            order = "<" if self.little else ">"
            group, element, length = struct.unpack(
                order + "HHL", self._read(8, f"an item of {tag} (no sequence delimiter)")
            )
            if (group, element) == (0xFFFE, _SEQUENCE_END):
                return
            if (group, element) != (0xFFFE, _ITEM):
                raise _Cut(f"{tag}: expected an item at byte {self.fp.tell() - 8}")
            if length == _UNDEFINED:
                self.dataset(-1)
            else:
                self._skip(length, f"an item of {tag}")
