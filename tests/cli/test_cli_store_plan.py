"""``dicombus store`` planning (contexts per association) and its progress bar."""

from __future__ import annotations

import io
from pathlib import Path

from dicombus.cli.progress import Progress
from dicombus.cli.store import Instance, contexts_for, plan_batches, read_instances
from dicombus.dataset_codec import Part10Header
from dicombus.protocol.limits import MAX_PRESENTATION_CONTEXTS
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


def _instance(sop_class: str, syntax: str, number: int = 0) -> Instance:
    header = Part10Header(
        sop_class_uid=sop_class,
        sop_instance_uid=f"1.2.3.{number}",
        transfer_syntax=syntax,
        dataset_offset=132,
    )
    return Instance(path=Path(f"{number}.dcm"), header=header, size=1000)


def _syntaxes(contexts: list) -> list[list[str]]:
    return [[str(ts) for ts in context.transfer_syntax] for context in contexts]


def test_explicit_files_get_their_own_context_and_an_implicit_fallback() -> None:
    assert _syntaxes(contexts_for(CT, [ExplicitVRLittleEndian])) == [
        [ExplicitVRLittleEndian],
        [ImplicitVRLittleEndian],
    ]


def test_implicit_and_compressed_files_need_no_fallback() -> None:
    assert _syntaxes(contexts_for(CT, [ImplicitVRLittleEndian])) == [[ImplicitVRLittleEndian]]
    assert _syntaxes(contexts_for(CT, [JPEGBaseline8Bit])) == [[JPEGBaseline8Bit]]


def test_mixed_syntaxes_of_one_class() -> None:
    assert _syntaxes(contexts_for(CT, [RLELossless, ExplicitVRBigEndian])) == [
        [RLELossless],
        [ExplicitVRBigEndian],
        [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
    ]


def test_a_small_plan_is_one_association_with_every_file() -> None:
    instances = [
        _instance(CT, ExplicitVRLittleEndian, 1),
        _instance(CT, RLELossless, 2),
        _instance("1.2.840.10008.5.1.4.1.1.4", ImplicitVRLittleEndian, 3),
        _instance(CT, ExplicitVRLittleEndian, 4),
    ]
    [batch] = plan_batches(instances)
    assert batch.instances == instances
    assert len(batch.contexts) == 4  # CT: Explicit, RLE, Implicit fallback; MR: Implicit


def test_many_classes_fall_back_to_one_context_each_within_one_association() -> None:
    instances = [_instance(f"1.2.3.4.{n}", ExplicitVRLittleEndian, n) for n in range(100)]
    [batch] = plan_batches(instances)
    assert len(batch.contexts) == MAX_PRESENTATION_CONTEXTS
    assert {str(context.abstract_syntax) for context in batch.contexts} == {
        f"1.2.3.4.{n}" for n in range(100)
    }


def test_more_classes_than_contexts_take_a_second_association() -> None:
    instances = [_instance(f"1.2.3.4.{n}", ExplicitVRLittleEndian, n) for n in range(130)]
    batches = plan_batches(instances)
    assert [len(batch.instances) for batch in batches] == [128, 2]
    assert all(len(batch.contexts) <= MAX_PRESENTATION_CONTEXTS for batch in batches)
    assert len(batches[1].contexts) == 4  # room again for a context per syntax


def test_read_instances_skips_what_is_not_dicom(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    instances, skipped = read_instances([text])
    assert instances == []
    assert skipped == [f"{text} is not a DICOM Part 10 file (no 'DICM' prefix)"]


def test_progress_draws_on_a_terminal_and_keeps_notes_above_the_bar() -> None:
    stream = io.StringIO()
    progress = Progress(2, stream, enabled=True)
    progress.advance(1_500_000)
    progress.note("a message")
    progress.advance(500_000)
    progress.close()
    text = stream.getvalue()
    assert "[############............] 1/2 files  1.5 MB" in text
    assert "\r\x1b[Ka message\n" in text
    last_drawing = text.rsplit("\r\x1b[K", 1)[-1]
    assert last_drawing.startswith("[########################] 2/2 files  2.0 MB  ")
    assert last_drawing.endswith(" MB/s\n")


def test_progress_off_the_terminal_prints_only_notes() -> None:
    stream = io.StringIO()
    progress = Progress(1, stream, enabled=False)
    progress.advance(10)
    progress.note("a message")
    progress.close()
    assert stream.getvalue() == "a message\n"
