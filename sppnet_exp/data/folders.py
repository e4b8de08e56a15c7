"""Walking dataset folders that follow symbolic links (linked split or class folders), safe from link cycles.

``Path.rglob`` does not descend into linked folders (before Python 3.13), so a dataset whose split folders
are links to another disk looked empty. :func:`walk_files` descends into them, and visits every real folder
once: a link back to an ancestor (a cycle) or a second link to the same folder is skipped, so the walk ends
and lists no file twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["walk_files"]


def walk_files(root: str | Path, suffixes: Sequence[str] | None = None) -> list[Path]:
    """Files under ``root`` (recursively, following links to folders and files), sorted by path.

    ``suffixes`` filters by extension, case-insensitively (``(".xml",)``); hidden entries are skipped.
    """
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    return sorted(p for p in _walk(Path(root), set()) if wanted is None or p.suffix.lower() in wanted)


def _walk(folder: Path, seen: set[tuple[int, int]]) -> Iterator[Path]:
    try:
        st = folder.stat()
    except OSError:
        return
    ident = (st.st_dev, st.st_ino)
    if ident in seen:  # a cycle, or a folder already reached through another link
        return
    seen.add(ident)
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows links
            is_file = not is_dir and entry.is_file()
        except OSError:  # a dangling or looping link
            continue
        if is_dir:
            yield from _walk(path, seen)
        elif is_file:
            yield path
