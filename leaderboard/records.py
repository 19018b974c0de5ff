"""Finding and loading the committed records of a track."""
from __future__ import annotations

from pathlib import Path

from leaderboard.schema import RecordError, load_record


def find_records(records_dir: str | Path, track: str) -> list[tuple[Path, dict]]:
    """All `*.json` records under `<records_dir>/<track>/` (any depth), validated, sorted by path.

    Returns an empty list when the track has no records directory.

    Raises:
        RecordError: a file is not a valid record, or is filed under another track's directory.
    """
    root = Path(records_dir) / track
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*.json"), key=lambda p: p.relative_to(root).as_posix()):
        record = load_record(path)
        if record["track"] != track:
            raise RecordError(
                str(path), "track", f"is {record['track']!r} but the file lies under the {track!r} records",
                f"move it to {Path(records_dir) / record['track']}/",
            )
        found.append((path, record))
    return found
