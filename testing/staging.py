"""Recording never destroys cassettes: what a recording session writes is staged aside and swapped in at its end.

The conformance harness records each scenario's cassette into a staging folder next to its cassette folder (same
file system). When the pytest session ends, the cassettes of a folder whose recording tests all passed replace the
old ones (``os.replace``: each file whole or not at all); a folder where a recording test failed keeps its old
cassettes untouched, and the terminal says so. Cassettes in a recorded folder that this session did not write (a
scenario that no longer exists, a suite that was renamed) are reported as stale.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Staging"]


@dataclass
class _Folder:
    staged: Path
    files: dict[str, Path] = field(default_factory=dict)
    """Cassette file name -> its staged copy."""
    failed: list[str] = field(default_factory=list)
    """Tests that recorded into the folder and failed."""


class Staging:
    """The cassettes one pytest session records, by cassette folder, until :meth:`commit`."""

    def __init__(self) -> None:
        self._folders: dict[Path, _Folder] = {}

    def _folder(self, folder: Path) -> _Folder:
        folder = folder.resolve()
        if folder not in self._folders:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.recording-", dir=folder.parent))
            self._folders[folder] = _Folder(staged)
        return self._folders[folder]

    def path(self, target: Path) -> Path:
        """Where to write the cassette meant for ``target`` for now."""
        entry = self._folder(target.parent)
        entry.files[target.name] = entry.staged / target.name
        return entry.files[target.name]

    def fail(self, folder: Path, test: str) -> None:
        """Note that ``test``, which recorded into ``folder``, failed: the folder keeps its old cassettes."""
        self._folder(folder).failed.append(test)

    def commit(self) -> list[str]:
        """Swap the staged cassettes of every folder without failures in; drop the others. Returns what happened,
        one line per folder (and per stale cassette)."""
        report: list[str] = []
        for folder, entry in sorted(self._folders.items()):
            written = {name: path for name, path in entry.files.items() if path.is_file()}
            if entry.failed:
                report.append(
                    f"cassettes in {folder} NOT updated: {len(entry.failed)} recording test(s) failed "
                    f"({', '.join(entry.failed[:3])}{', ...' if len(entry.failed) > 3 else ''}); the old ones are kept"
                )
            elif written:
                folder.mkdir(parents=True, exist_ok=True)
                for name, path in sorted(written.items()):
                    os.replace(path, folder / name)
                report.append(f"recorded {len(written)} cassette(s) into {folder}")
                stale = sorted(p.name for p in folder.glob("*.json") if p.name not in written)
                report.extend(
                    f"stale cassette {folder / name}: no test recorded it this session (delete it if it is unused)"
                    for name in stale
                )
            shutil.rmtree(entry.staged, ignore_errors=True)
        for parent in sorted({folder.parent for folder in self._folders}):
            for sibling in sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")):
                if sibling not in self._folders and any(sibling.glob("*.json")):
                    report.append(
                        f"stale cassette folder {sibling}: no suite of this session records into it "
                        "(another adapter's, or unused: delete it)"
                    )
        self._folders.clear()
        return report
