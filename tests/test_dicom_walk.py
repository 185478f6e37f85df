"""Finding where a DICOM file is cut short (rtcheck.dicom_walk)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from rtcheck.dicom_walk import find_truncation

RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"


def encoded(ds: Dataset, syntax: UID) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def structure_set(undefined: bool) -> Dataset:
    """A small RTSTRUCT-like dataset whose last element is the ROI Contour Sequence."""
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "WALK"
    items = []
    for number in range(3):
        contour = Dataset()
        contour.ContourData = [1.5, -2.0, 3.25] * 12
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence([contour])
        if undefined:
            item["ContourSequence"].is_undefined_length = True
        items.append(item)
    ds.ROIContourSequence = Sequence(items)
    if undefined:
        ds["ROIContourSequence"].is_undefined_length = True
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_every_cut_inside_the_last_sequence_is_found(
    tmp_path: Path, syntax: UID, undefined: bool
) -> None:
    data = encoded(structure_set(undefined), syntax)
    assert (b"\xff\xff\xff\xff" in data) == undefined  # the lengths are what we asked for
    path = tmp_path / "rs.dcm"
    path.write_bytes(data)
    assert find_truncation(path) is None
    start = data.index(b"\x06\x30\x39\x00")  # tag (3006,0039), the last element
    # (A cut within its first 8 bytes leaves too little to tell from stray padding.)
    for cut in range(start + 8, len(data)):
        path.write_bytes(data[:cut])
        where = find_truncation(path)
        assert where is not None, cut
        assert f"ends at byte {cut}" in where or "cut off" in where


def test_encapsulated_pixel_data_cut_short_is_found(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = encapsulate([b"\x01" * 300, b"\x02" * 300])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = encoded(ds, RLELossless)
    path = tmp_path / "rd.dcm"
    path.write_bytes(data)
    assert find_truncation(path) is None
    for cut in (len(data) - 8, len(data) - 1, len(data) - 400):
        path.write_bytes(data[:cut])
        assert "(7FE0,0010)" in (find_truncation(path) or "")


def test_files_pydicom_ships() -> None:
    # Read by pydicom without an error, yet cut short.
    for name in ("rtplan_truncated.dcm", "MR_truncated.dcm"):
        assert find_truncation(get_testdata_file(name)) is not None, name
    # Complete, including a sequence of VR UN and undefined length (implicit VR inside)
    # and a file whose dataset is implicit VR although its transfer syntax says explicit.
    for name in ("rtplan.dcm", "rtdose.dcm", "rtstruct.dcm", "UN_sequence.dcm", "CT_small.dcm"):
        assert find_truncation(get_testdata_file(name)) is None, name


def test_files_without_the_part_10_header_are_not_walked(tmp_path: Path) -> None:
    path = tmp_path / "raw.dcm"
    path.write_bytes(b"\x08\x00\x16\x00" + b"\x00" * 50)
    assert find_truncation(path) is None


@pytest.mark.parametrize("tail", [b"\0", b"\0" * 6, b"\n", b"\xff" * 4, b"\0" * 100])
def test_stray_bytes_after_the_last_element_are_not_a_cut(tmp_path: Path, tail: bytes) -> None:
    # pydicom reads such files; a few bytes that cannot hold an element header, or
    # zero padding, are not a file cut short.
    path = tmp_path / "padded.dcm"
    path.write_bytes(Path(get_testdata_file("rtdose.dcm")).read_bytes() + tail)
    assert find_truncation(path) is None


def test_a_stray_sequence_delimiter_is_tolerated(tmp_path: Path) -> None:
    # A Sequence Delimitation Item after a sequence of defined length (pydicom reads it).
    ds = structure_set(undefined=False)
    ds.PatientName = "Last^Element"
    data = encoded(ds, ExplicitVRLittleEndian)
    start = data.index(b"\x06\x30\x39\x00")  # (3006,0039), defined length
    (length,) = struct.unpack("<L", data[start + 8 : start + 12])
    end = start + 12 + length
    path = tmp_path / "stray.dcm"
    path.write_bytes(data[:end] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" + data[end:])
    assert find_truncation(path) is None
