"""The last resort of a stopping publisher: held messages the outbox could not take, in a file.

When the outbox cannot store (disk full) the publisher holds messages in
memory. If it must stop while that is still so -- after trying again within the
stop timeout, with the disk reserve released -- it writes them here, one JSON
object a line, fsynced, mode 0600, in the data folder, rather than let them go
with the process. The next start appends them to the outbox (their submit
numbers keep their place in the replay order) before the publisher starts, and
deletes the file once the outbox holds them.

A line that does not read back (a version that wrote other fields) is not
dropped: the file is renamed aside with ``.unreadable`` and named in an error,
after the lines that do read are in the outbox.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from dicombus.bus.outbox import Outbox, OutboxMessage
from dicombus.storage_files import fsync_folder

LOGGER = logging.getLogger("dicombus.bus.held_file")

HELD_FILE = "held-events.jsonl"  # in the data folder
FILE_MODE = 0o600


def write_held(path: Path, messages: Sequence[OutboxMessage]) -> None:
    """Append ``messages`` to ``path`` and fsync it (and its folder); raise OSError if the
    disk refuses."""
    lines = "".join(
        json.dumps(asdict(message), separators=(",", ":")) + "\n" for message in messages
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        data = memoryview(lines.encode())
        while data:
            data = data[os.write(descriptor, data) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    fsync_folder(path.parent)


def replay_held(path: Path, outbox: Outbox) -> int:
    """Move what a stopped publisher left in ``path`` into ``outbox``; return how many
    messages. Raises :class:`~dicombus.bus.outbox.OutboxError` (the file stays) when the
    outbox cannot take them."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    messages: list[OutboxMessage] = []
    unreadable: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            messages.append(OutboxMessage(**json.loads(line)))
        except (ValueError, TypeError):
            unreadable.append(number)
    outbox.append(messages)
    if unreadable:
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        LOGGER.error(
            "%s: lines %s do not read as held events; the file is kept as %s",
            path,
            ", ".join(map(str, unreadable)),
            aside,
        )
    else:
        path.unlink()
    fsync_folder(path.parent)
    LOGGER.warning(
        "%d events held at the last stop (the outbox could not store them) are in the outbox now",
        len(messages),
    )
    return len(messages)
