"""The file: URI of a stored instance (stored_file_uri), which its BulkDataURIs start with.

Under the storage root the URI is the root's URI and the path below it: the same
URI as ``Path.resolve().as_uri()`` where no symbolic link is involved, and one that
still starts with the root's (``bulk_data_uri_base``) where a folder inside the
storage is a link. Anywhere else the path is resolved.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from dicombus.bus.dicom_json import read_file_bulk_data, stored_file_json, stored_file_uri
from helpers import small_dataset, write_part10
from hypothesis import given, settings
from hypothesis import strategies as st

PIXEL_DATA = "7FE00010"

# Folder and file names a layout may produce from UIDs, AE titles or a custom pattern,
# characters a URI must quote included.
names = st.text(
    st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=24
).filter(lambda name: name not in {".", ".."})


@settings(max_examples=60, deadline=None)
@given(root_name=names, folder=names, name=names)
def test_under_the_root_the_uri_is_the_resolved_one(root_name: str, folder: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch).resolve() / root_name
        path = root / folder / name
        path.parent.mkdir(parents=True)
        path.touch()
        assert stored_file_uri(path, root.as_uri()) == path.resolve().as_uri()
        assert stored_file_uri(str(path), root.as_uri() + "/") == path.resolve().as_uri()


def test_a_linked_folder_inside_the_storage_keeps_the_root_prefix(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    root = tmp_path / "storage"
    elsewhere.mkdir()
    root.mkdir()
    (root / "study").symlink_to(elsewhere, target_is_directory=True)
    path = write_part10(small_dataset(), root / "study" / "instance.dcm")
    root_uri = root.resolve().as_uri()

    model = stored_file_json(path, threshold=1024, root_uri=root_uri)

    assert model is not None
    uri = model[PIXEL_DATA]["BulkDataURI"]
    assert uri == f"{root_uri}/study/instance.dcm?tag={PIXEL_DATA}"
    assert read_file_bulk_data(uri) == small_dataset().PixelData
    # Without the root, the link is resolved, as before.
    assert stored_file_uri(path) == (elsewhere / "instance.dcm").resolve().as_uri()


def test_a_file_outside_the_root_is_resolved(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    sibling = tmp_path / "storage2"  # shares the root's name as a prefix, is not in it
    sibling.mkdir()
    (tmp_path / "link").symlink_to(sibling, target_is_directory=True)
    path = tmp_path / "link" / "instance.dcm"
    path.touch()
    root_uri = root.resolve().as_uri()

    assert stored_file_uri(path, root_uri) == (sibling / "instance.dcm").resolve().as_uri()
    assert (
        stored_file_uri(sibling / "instance.dcm", root_uri)
        == (sibling / "instance.dcm").resolve().as_uri()
    )


def test_a_relative_path_is_taken_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = (tmp_path / "storage").resolve()
    (root / "series").mkdir(parents=True)
    (root / "series" / "a b.dcm").touch()
    monkeypatch.chdir(root)
    uri = stored_file_uri(os.path.join("series", "a b.dcm"), root.as_uri())
    assert uri == f"{root.as_uri()}/series/a%20b.dcm"


def test_a_root_that_is_not_a_local_file_uri_is_not_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "instance.dcm"
    path.touch()
    for root_uri in ("s3://bucket/storage", "file://host" + str(tmp_path), ""):
        assert stored_file_uri(path, root_uri) == path.resolve().as_uri()


def test_the_filesystem_root_as_storage_root(tmp_path: Path) -> None:
    path = (tmp_path / "instance.dcm").resolve()
    path.touch()
    assert stored_file_uri(path, "file:///") == path.as_uri()
