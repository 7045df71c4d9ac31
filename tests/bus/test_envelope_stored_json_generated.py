"""The stored-file reader (stored_file_json) against pydicom's way, on generated instances.

The reader builds the JSON model in one pass over the file's bytes; whatever
Hypothesis writes (text of every plain VR in the three plain character sets,
multiple values, empty values, binary numbers, bulk and inline binary values,
sequences of defined and undefined length), the model is pydicom's, key for
key and in the same order. And the bench's own instances (bench/bus_run.py's
C-STORE rows) take the fast way and give pydicom's model too.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from dicombus.bus.dicom_json import (
    file_bulk_data_uri,
    read_header,
    stored_file_json,
    to_dicom_json,
)
from helpers import small_dataset, write_part10
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CHARACTER_SETS = {None: "", "ISO_IR 100": "éüß", "ISO_IR 192": "éü漢字"}
# No value of a VR that may not be bulk data (AE, AS, CS, DA, DT, LO, PN, SH, TM, UI)
# is longer than this here, encoded.
LONGEST_TEXT = 1024


def pydicom_model(path: Path, threshold: int) -> dict[str, Any]:
    return to_dicom_json(
        read_header(path, defer_size=threshold),
        bulk_data_uri=lambda tag_path: file_bulk_data_uri(path, tag_path),
        threshold=threshold,
    )


def _text(extra: str, most: int) -> st.SearchStrategy[str]:
    """Text of at most ``most`` characters, with characters of ``extra`` (those only the
    character set encodes) in it as often as not."""
    letters = "ABCXYZabcxyz019 -_."
    half = most // 2
    plain = st.text(alphabet=letters, max_size=half)
    mixed = st.text(alphabet=letters + extra, max_size=half) if extra else plain
    return st.builds(str.__add__, plain, mixed).map(str.strip)


def _values(one: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One value, or several (PS3.5 6.4: the backslash-separated multiplicity)."""
    return st.one_of(one, st.lists(one, min_size=2, max_size=4))


_UIDS = st.from_regex(r"1\.2\.[1-9][0-9]{0,20}(\.[1-9][0-9]{0,8}){0,3}", fullmatch=True)


def _elements(accented: str) -> dict[tuple[int, str], st.SearchStrategy[Any]]:
    """(tag, VR) -> its values; private tags (odd groups) for the VRs the standard's
    tags do not cover here."""
    return {
        (0x00080008, "CS"): _values(st.sampled_from(["ORIGINAL", "PRIMARY", "AXIAL", ""])),
        (0x00080020, "DA"): st.sampled_from(["20240102", "19991231", ""]),
        (0x00080030, "TM"): st.sampled_from(["101112", "235959.123456", ""]),
        (0x0008002A, "DT"): st.sampled_from(["20261122210000.123456", ""]),
        (0x00080050, "SH"): _text(accented, 16),
        (0x00080054, "AE"): st.sampled_from(["EDGE", "PACS 1", ""]),
        (0x00081030, "LO"): _values(_text(accented, 64)),
        (0x00081140, "SQ"): st.integers(min_value=0, max_value=3),
        (0x00101010, "AS"): st.sampled_from(["045Y", "003M", ""]),
        (0x00100010, "PN"): st.one_of(
            st.just(""), st.builds(lambda a, b: f"{a}^{b}", _text(accented, 20), _text("", 20))
        ),
        (0x00101030, "DS"): _values(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: f"{x:.6g}")
        ),
        (0x00200013, "IS"): _values(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        (0x00204000, "LT"): _text(accented + "\\", 2000),
        (0x00280010, "US"): _values(st.integers(min_value=0, max_value=65535)),
        (0x00281052, "DS"): st.just("-1024"),
        (0x00091010, "OB"): st.binary(max_size=2000),
        (0x00091011, "SL"): _values(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        (0x00091012, "FD"): _values(st.floats(allow_nan=False, allow_infinity=False)),
        (0x00091013, "FL"): _values(st.floats(width=32, allow_nan=False, allow_infinity=False)),
        (0x00091014, "UL"): _values(st.integers(min_value=0, max_value=2**32 - 1)),
        (0x00091015, "SS"): _values(st.integers(min_value=-(2**15), max_value=2**15 - 1)),
        (0x00091016, "UT"): _text(accented, 3000),
        (0x00091017, "ST"): _text(accented, 300),
        (0x00091018, "UC"): _values(_text(accented, 40)),
        (0x00091019, "UR"): st.sampled_from(["http://example.com/a%20b", ""]),
        (0x0009101A, "OW"): st.binary(max_size=64).map(lambda data: data[: len(data) // 2 * 2]),
    }


@st.composite
def instances(draw: st.DrawFn) -> tuple[Dataset, int]:
    """A stored instance (small_dataset with generated elements) and a bulk threshold."""
    charset = draw(st.sampled_from(sorted(CHARACTER_SETS, key=str)))
    accented = CHARACTER_SETS[charset]
    ds = small_dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    strategies = _elements(accented)
    chosen = draw(st.lists(st.sampled_from(sorted(strategies)), unique=True, max_size=12))
    for tag, vr in chosen:
        value = draw(strategies[(tag, vr)])
        if vr == "SQ":
            items = []
            for _ in range(value):
                item = Dataset()
                item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
                item.ReferencedSOPInstanceUID = draw(_UIDS)
                if draw(st.booleans()):
                    item.add_new(0x00091010, "OB", draw(st.binary(max_size=2000)))
                item.is_undefined_length_sequence_item = draw(st.booleans())
                items.append(item)
            ds.add(DataElement(tag, "SQ", items))
            ds[tag].is_undefined_length = draw(st.booleans())
        else:
            ds.add(DataElement(tag, vr, value))
    return ds, draw(st.sampled_from([64, LONGEST_TEXT]))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(instances())
def test_a_generated_instance_gives_pydicoms_model(instance: tuple[Dataset, int]) -> None:
    ds, threshold = instance
    with tempfile.TemporaryDirectory() as folder:
        path = write_part10(ds, Path(folder) / "instance.dcm")
        fast = stored_file_json(path, threshold=threshold)
        general = pydicom_model(path, threshold)
        if threshold == LONGEST_TEXT:
            # Every VR and character set here is the fast reader's; under a smaller
            # threshold, text that may not be bulk data yet is over it is pydicom's.
            assert fast is not None
        if fast is not None:
            assert fast == general
            assert list(fast) == list(general)  # ascending tags, same order


def bench_instance() -> Dataset:
    """An instance as bench/bus_run.py's publish and C-STORE rows send them (its own
    builder, loaded from the file: the bench is not a package)."""
    source = Path(__file__).resolve().parents[2] / "bench" / "bus_run.py"
    spec = importlib.util.spec_from_file_location("bench_bus_run", source)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    dataset: Dataset = bench._dataset(16, 16)
    return dataset


def test_the_benchs_instances_take_the_fast_way(tmp_path: Path) -> None:
    instance = bench_instance()
    for index in range(3):
        path = write_part10(instance, tmp_path / f"{index}.dcm")
        fast = stored_file_json(path, threshold=1024)
        assert fast is not None
        assert fast == pydicom_model(path, 1024)


def _explicit_element(group: int, element: int, vr: str, value: bytes) -> bytes:
    """One element in Explicit VR Little Endian with a 2-byte length (PS3.5 7.1.2)."""
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _with_appended(tmp_path: Path, *elements: bytes) -> Path:
    """A stored instance with ``elements`` written after its last one: out of tag order."""
    path = write_part10(small_dataset(), tmp_path / "instance.dcm")
    with path.open("ab") as stream:
        stream.write(b"".join(elements))
    return path


def test_a_file_out_of_tag_order_gives_pydicoms_model(tmp_path: Path) -> None:
    path = _with_appended(tmp_path, _explicit_element(0x0008, 0x0070, "LO", b"ACME"))
    fast = stored_file_json(path, threshold=1024)
    assert fast is not None and fast["00080070"] == {"vr": "LO", "Value": ["ACME"]}
    assert list(fast) == list(pydicom_model(path, 1024)) and fast == pydicom_model(path, 1024)


def test_text_read_before_a_character_set_that_changes_it_is_left_to_pydicom(
    tmp_path: Path,
) -> None:
    # The dataset's names were decoded in the default repertoire before (0008,0005),
    # appended last, named UTF-8: one pass cannot know, pydicom's way decides.
    path = _with_appended(tmp_path, _explicit_element(0x0008, 0x0005, "CS", b"ISO_IR 192"))
    assert stored_file_json(path, threshold=1024) is None
    latin = _with_appended(tmp_path, _explicit_element(0x0008, 0x0005, "CS", b"ISO_IR 6"))
    assert stored_file_json(latin, threshold=1024) == pydicom_model(latin, 1024)
