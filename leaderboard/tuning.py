"""How many settings each board entry's sweep tried: the count the boards print beside the sweep
link, read from the sweep records that ship with atbench (`leaderboard/sweeps/<track>/<defense>.json`,
whose winners are the tracks' settings; a record names its sweep in `defense.sweep`)."""
from __future__ import annotations

from benchmark.core.sweep_files import read_sweep
from benchmark.core.tuning_rules import edge_keys
from benchmark.core.workspace import shipped_sweeps


def tuning_summary(sweep: str | None) -> dict | None:
    """For the sweep named "<track>/<defense>" (None: the entry has none): the declared
    settings, all settings tried, those the grid-edge rule added (None when the sweep predates
    the rule), and whether its winner lies at an edge of the settings tried. None when the
    sweep is not among the shipped ones."""
    path = shipped_sweeps() / f"{sweep}.json" if sweep else None
    if path is None or not path.is_file():
        return None
    record = read_sweep(path)
    configs = [row["config"] for row in record["settings"]]
    return {"declared": record["budget"], "settings": len(configs),
            "edge_extensions": record.get("edge_extensions"),
            "winner_at_edge": bool(edge_keys(configs, record["winner"]))}
