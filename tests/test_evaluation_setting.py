"""Records of another evaluation setting (the attacks' search precision, the GPU fast path) are
other results: a board never mixes them and says which one it holds
(`leaderboard.evaluation_setting`)."""
from __future__ import annotations

import pytest

from benchmark.core.errors import AtbenchError
from leaderboard.build import build
from leaderboard.evaluation_setting import search_precision, search_suffix
from tests.fixtures_records import consistent

pytestmark = pytest.mark.unit

FAST_PATH = {"training": ["data_on_device", "channels_last", "bf16"], "evaluation": ["channels_last"]}


def _bf16(item):
    for column in item.record["attacks"]:
        item.record["attacks"][column] += search_suffix("bf16")
    return item


def _fast(item):
    item.record["provenance"]["fast_path"] = FAST_PATH
    return item


def test_a_board_of_one_setting_says_which_it_holds():
    """Breaks if a board does not state its records' search precision and fast path, in the JSON
    statistics block and in the Markdown."""
    markdown, board = build([consistent("pgd-at", seed) for seed in range(3)])
    assert board["statistics"]["evaluation"] == "attacks searched in fp32; plain path (no GPU fast path)"
    assert "Evaluation: attacks searched in fp32; plain path (no GPU fast path)" in markdown
    markdown, board = build([_fast(_bf16(consistent("pgd-at", seed))) for seed in range(2)])
    assert board["statistics"]["evaluation"].startswith("attacks searched in bf16, every adversarial example "
                                                        "re-checked in fp32; GPU fast path (training: data_on_device")
    assert board["statistics"]["evaluation"] in markdown


@pytest.mark.parametrize("change", [_bf16, _fast], ids=["bf16-search", "fast-path"])
def test_a_board_never_mixes_settings(change):
    """Breaks if a board averages one seed evaluated under another setting (bf16 search, or the
    GPU fast path) with fp32 seeds of the same defense, or mixes it with another defense,
    instead of one error naming both records and the fix."""
    for odd in (change(consistent("pgd-at", 0)), change(consistent("trades", 0))):
        records = [odd, consistent("pgd-at", 1), consistent("pgd-at", 2)]
        with pytest.raises(AtbenchError) as info:
            build(records)
        error = info.value
        assert "mix evaluation settings" in error.problem and "--records-dir" in error.fix
        name = f"{odd.record['defense']['id']} seed 0"
        assert name in error.problem and ("pgd-at seed 1" in error.problem or "pgd-at seed 2" in error.problem)


def test_precision_reads_back_what_the_record_marks():
    """Breaks if the precision a record's attacks entries mark is not the one read back."""
    item = consistent()
    assert search_precision(item.record) == "fp32"
    assert search_precision(_bf16(item).record) == "bf16"
