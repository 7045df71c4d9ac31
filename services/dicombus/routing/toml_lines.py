"""Where each key of a TOML file is written, so an error can name the line.

``tomllib`` gives values without positions. This reads the text once more, line by line,
following table headers and arrays of tables (``[[routing.rules]]`` counts its entries,
``[routing.rules.match]`` belongs to the last one), and maps each key path, such as
``("routing", "rules", 1, "match", "Modality")``, to its line. Keys inside an inline table
are found on the line that opens it; an element of a multi-line array is not located, and
:func:`line_of` falls back to the nearest enclosing key that is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY = re.compile(rf"\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_HEADER = re.compile(rf"\s*(\[\[?)\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]\]?")
_PART = re.compile(_BARE_OR_QUOTED)
_INLINE_KEY = re.compile(rf"[{{,]\s*({_BARE_OR_QUOTED})\s*=")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


def _parts(dotted: str) -> list[str]:
    return [part.strip("\"'") for part in _PART.findall(dotted)]


def _depth_change(line: str) -> int:
    """How many brackets ``line`` leaves open (strings and comments aside)."""
    code = _STRING.sub("", line).split("#", 1)[0]
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def key_lines(text: str) -> dict[Path, int]:
    lines: dict[Path, int] = {}
    arrays: dict[Path, int] = {}  # array of tables (with its parents' indices) -> last index
    current: Path = ()
    open_brackets = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if open_brackets > 0:  # inside a multi-line array or inline table
            open_brackets += _depth_change(line)
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            path: list[str | int] = []
            names = _parts(header.group(2))
            is_array = header.group(1) == "[["
            for index, part in enumerate(names):
                path.append(part)
                # A table inside an array of tables belongs to its last entry.
                if tuple(path) in arrays and not (is_array and index == len(names) - 1):
                    path.append(arrays[tuple(path)])
            if is_array:
                key = tuple(path)
                arrays[key] = arrays.get(key, -1) + 1
                path.append(arrays[key])
            current = tuple(path)
            lines.setdefault(current, number)
            continue
        found = _KEY.match(line)
        if not found:
            continue
        key_path = current + tuple(_parts(found.group(1)))
        lines.setdefault(key_path, number)
        rest = line[found.end() :]
        for inner in _INLINE_KEY.finditer(rest):
            lines.setdefault((*key_path, inner.group(1).strip("\"'")), number)
        open_brackets = _depth_change(rest)
    return lines


def line_of(lines: dict[Path, int], path: Sequence[str | int]) -> int | None:
    """The line of ``path``, else of the nearest enclosing key or table that has one."""
    wanted = tuple(path)
    while wanted:
        if wanted in lines:
            return lines[wanted]
        wanted = wanted[:-1]
    return None
