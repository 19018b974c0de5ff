"""Finding and loading the committed records of one protocol (one board)."""
from __future__ import annotations

from pathlib import Path

from leaderboard.record import RecordError, load_record


def find_records(records_dir: str | Path, protocol: str) -> list[tuple[Path, dict]]:
    """All `*.json` records under `<records_dir>/<protocol>/` (any depth), validated, sorted by
    path. A track's default protocol has the track's name, so its records lie under
    `<records_dir>/<track>/`.

    Returns an empty list when the protocol has no records directory.

    Raises:
        RecordError: a file is not a valid record, or is filed under another protocol's directory.
    """
    root = Path(records_dir) / protocol
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*.json"), key=lambda p: p.relative_to(root).as_posix()):
        record = load_record(path)
        if record["protocol"]["id"] != protocol:
            raise RecordError(
                str(path), "protocol.id",
                f"is {record['protocol']['id']!r} but the file lies under the {protocol!r} records",
                f"move it to {Path(records_dir) / record['protocol']['id']}/",
            )
        found.append((path, record))
    return found
