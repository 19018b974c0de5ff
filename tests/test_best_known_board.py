"""Best known on the board: the board build admits the attack records of its protocol against its
entries (a refused one is an error naming its file), gives each attacked entry a `best_known` block
beside its worst case (seeds pooled for the paired test), shows it in the ranked table and a
section, keeps the protocol's ranking, and writes the attack board beside the board. Every number
is checked by hand on the fixture board of `tests.attack_fixtures`."""
from __future__ import annotations

import json
import shutil

import pytest

from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from leaderboard.attack_admission import AdmittedAttack
from leaderboard.attack_board import ATTACK_BOARD_SUFFIXES
from leaderboard.best_known import OVERSTATED, best_known, entry_best_known
from leaderboard.build import admitted_records, board_attacks, build_json, write_board
from leaderboard.evidence import worst_flags
from leaderboard.formats import pct
from leaderboard.markdown import render_markdown
from tests.attack_fixtures import PROTOCOL, write_attacked_board, write_records
from tests.test_attack_records import write_attack

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """(records folder, attack records folder, entries, board without attacks, board with them)."""
    records, attacks, entries = write_attacked_board(tmp_path_factory.mktemp("attacked"))
    admitted = admitted_records(records, PROTOCOL)
    return records, attacks, entries, build_json(admitted), build_json(admitted, board_attacks(attacks, PROTOCOL,
                                                                                               admitted))


def _entry(board: dict, defense: str) -> dict:
    return next(x for x in board["entries"] if x["defense"] == defense)


def _protocol_points(entry, eps: str) -> int:
    return int(worst_flags(entry, eps).sum())


def test_the_planted_entry_is_flagged_with_its_points_and_attacks_named(fixture):
    _, _, entries, _, board = fixture
    planted = entries[("pgd-at", 0)]
    at = _entry(board, "pgd-at")["best_known"]["0.3"]
    robust = _protocol_points(planted, "0.3")
    assert at["protocol"] == round(robust / 300, 4) == _entry(board, "pgd-at")["worst_case"]["0.3"]
    assert at["best_known"] == round((robust - 5) / 300, 4)
    assert at["points_beyond"] == 5 and at["p_value"] == 0.5 ** 5 == 0.03125
    assert at["flag"] == OVERSTATED == "the protocol's attacks overstate this entry"
    assert at["attacks"] == {"0": ["bpda", "eot-pgd"]}
    points = at["best_known_attacks"]["0"]
    assert [p["index"] for p in points] == sorted(p["index"] for p in points)
    assert [p["attacks"] for p in points] == [["bpda", "eot-pgd"]] + [["bpda"]] * 4
    assert all(worst_flags(planted, "0.3")[p["index"]] for p in points)  # robust under the protocol (index = position)
    for eps in ("0.1", "0.2"):  # nothing broken beyond the protocol there
        other = _entry(board, "pgd-at")["best_known"][eps]
        assert (other["points_beyond"], other["p_value"], other["flag"]) == (0, 1.0, None)
        assert other["best_known"] == other["protocol"] == _entry(board, "pgd-at")["worst_case"][eps]


def test_an_honest_entry_with_two_points_beyond_the_protocol_is_not_flagged(fixture):
    _, _, entries, _, board = fixture
    at = _entry(board, "trades")["best_known"]["0.3"]
    robust = _protocol_points(entries[("trades", 0)], "0.3")
    assert at["best_known"] == round((robust - 2) / 300, 4)
    assert at["points_beyond"] == 2 and at["p_value"] == 0.25 and at["flag"] is None
    assert at["attacks"] == {"0": ["eot-pgd", "multi-targeted"]}  # multi-targeted broke only the protocol's points
    assert [p["attacks"] for p in at["best_known_attacks"]["0"]] == [["eot-pgd"], ["eot-pgd"]]


def test_seeds_are_averaged_and_their_points_concatenated_for_the_test(fixture):
    _, _, entries, _, board = fixture
    at = _entry(board, "mart")["best_known"]["0.3"]
    robust = [_protocol_points(entries[("mart", s)], "0.3") for s in (0, 1)]
    assert at["best_known"] == round(((robust[0] - 3) / 300 + (robust[1] - 2) / 300) / 2, 4)
    assert at["protocol"] == _entry(board, "mart")["worst_case"]["0.3"]
    assert {seed: len(points) for seed, points in at["best_known_attacks"].items()} == {"0": 3, "1": 2}
    # 3 + 2 = 5 pooled points: p = 1/32, flagged, though neither seed alone would be (1/8, 1/4)
    assert at["points_beyond"] == 5 and at["p_value"] == 0.03125 and at["flag"] == OVERSTATED


def test_an_entry_without_attack_records_has_none_and_the_ranking_stays_the_protocols(fixture):
    _, _, _, plain, board = fixture
    assert _entry(board, "standard")["best_known"] is None
    assert all(x["best_known"] is None for x in plain["entries"])
    strip = lambda b: [{k: v for k, v in x.items() if k != "best_known"} for x in b["entries"]]
    assert strip(board) == strip(plain)  # order, ranks and every other number unchanged
    assert board["significance"] == plain["significance"] and board["claims"] == plain["claims"]


def test_the_ranked_table_and_the_section_show_best_known(fixture):
    _, _, _, plain, board = fixture
    table = board["view"]["sections"][1]["blocks"][0]
    ids = [c["id"] for c in table["columns"]]
    assert ids.index("best-known") == ids.index("worst-case") + 1
    assert table["columns"][ids.index("best-known")]["label"] == "best known (%)"
    cells = {x["defense"]: row[ids.index("best-known")]["text"] for x, row in zip(board["entries"], table["rows"])}
    known = {d: pct(_entry(board, d)["best_known"]["0.3"]["best_known"]) for d in ("pgd-at", "trades", "mart")}
    assert cells == {"pgd-at": f"{known['pgd-at']} (overstated)", "trades": known["trades"],
                     "mart": f"{known['mart']} (overstated)", "standard": "-"}
    section = next(s for s in board["view"]["sections"] if s["id"] == "best-known")
    lines = next(b for b in section["blocks"] if b["kind"] == "items")["items"]
    assert [line.split("**")[1] for line in lines] == ["mart", "trades", "pgd-at"]  # board order, attacked only
    assert "The ranking stays the protocol's" in section["blocks"][0]["text"]
    assert "**the protocol's attacks overstate this entry**" in lines[2] and "overstate" not in lines[1]
    assert "5 points broken beyond the protocol (`bpda` 5, `eot-pgd` 1), p = 0.031" in lines[2]
    assert "No submitted attack was run against: standard." in render_markdown(board)
    # without attack records: no section, and the column shows `-`
    assert all(s["id"] != "best-known" for s in plain["view"]["sections"])
    assert {row[ids.index("best-known")]["text"] for row in plain["view"]["sections"][1]["blocks"][0]["rows"]} == {"-"}


def test_entry_best_known_refuses_another_entrys_record(fixture):
    records, attacks, entries, _, _ = fixture
    admitted = admitted_records(records, PROTOCOL)
    found = board_attacks(attacks, PROTOCOL, admitted)
    mart = [it for it in admitted if it.record["defense"]["id"] == "mart"]
    theirs = [a for a in found if a.record["entry"]["defense"] == "pgd-at"]
    with pytest.raises(AtbenchError, match="attacked pgd-at seed 0, not mart"):
        entry_best_known(mart, theirs)
    assert entry_best_known(mart, []) is None
    # one seed's block is `best_known` of that record
    one = entry_best_known([entries[("trades", 0)]], [a for a in found if a.record["entry"]["defense"] == "trades"])
    single = best_known(entries[("trades", 0)], [a for a in found if a.record["entry"]["defense"] == "trades"])
    assert one["0.3"]["p_value"] == single["0.3"].p_value and one["0.3"]["best_known"] == round(
        single["0.3"].best_known_acc, 4)


def test_write_board_writes_the_attack_board_and_links_it_from_the_index(fixture, tmp_path):
    records, attacks, _, _, _ = fixture
    boards = tmp_path / "boards"
    attack_files = {f"{PROTOCOL}{suffix}" for suffix in ATTACK_BOARD_SUFFIXES}
    assert attack_files == {f"{PROTOCOL}.attacks.md", f"{PROTOCOL}.attacks.json", f"{PROTOCOL}.attacks.html"}
    paths = write_board(records, PROTOCOL, boards, (), attacks)
    assert {p.name for p in paths} >= attack_files
    board = json.loads((boards / f"{PROTOCOL}.json").read_text())
    assert _entry(board, "pgd-at")["best_known"]["0.3"]["flag"] == OVERSTATED
    index = (boards / "index.html").read_text()
    # one board row (the attack board's JSON is no board), which links the attack board's page
    assert index.count(f'href="{PROTOCOL}.html"') == 1 and index.count("<tr>") == 2
    assert index.count(f'href="{PROTOCOL}.attacks.html"') == 1
    assert f'href="{PROTOCOL}.attacks.html">Attack board</a>' in (boards / f"{PROTOCOL}.html").read_text()
    # an empty attack records folder: no best known, and the stale attack board is removed
    empty = tmp_path / "no-attacks"
    (empty / PROTOCOL).mkdir(parents=True)
    write_board(records, PROTOCOL, boards, (), empty)
    assert not any((boards / name).exists() for name in attack_files)
    assert all(x["best_known"] is None for x in json.loads((boards / f"{PROTOCOL}.json").read_text())["entries"])
    assert "attacks.html" not in (boards / "index.html").read_text()
    assert "attacks.html" not in (boards / f"{PROTOCOL}.html").read_text()
    # a missing folder holds none; None reads none and leaves an attack board alone
    write_board(records, PROTOCOL, boards, (), attacks)
    write_board(records, PROTOCOL, boards, (), tmp_path / "missing")
    assert not any((boards / name).exists() for name in attack_files)
    write_board(records, PROTOCOL, boards, (), attacks)
    write_board(records, PROTOCOL, boards)
    assert all((boards / name).exists() for name in attack_files)


def test_an_attack_record_that_fails_admission_stops_the_board_naming_its_file(fixture, tmp_path):
    records, attacks, entries, _, _ = fixture
    bad = tmp_path / "attacks"
    shutil.copytree(attacks, bad)

    def claim_more(record):
        record["broken"]["0.3"] += 1

    path = write_attack(bad / PROTOCOL, entries[("trades", 0)], "bpda", {"0.3": [0]}, claim_more)
    with pytest.raises(AtbenchError) as info:
        write_board(records, PROTOCOL, tmp_path / "boards", (), bad)
    assert str(path) in info.value.problem and "field `broken.0.3`" in info.value.problem
    assert not (tmp_path / "boards").exists()  # nothing written


def test_an_attack_record_of_an_entry_not_on_the_board_is_an_error(fixture, tmp_path):
    _, attacks, _, _, _ = fixture
    records = tmp_path / "records"
    write_records(records, {"pgd-at": (0,), "trades": (0,)})  # the same records, without mart and standard
    with pytest.raises(AtbenchError) as info:
        write_board(records, PROTOCOL, tmp_path / "boards", (), attacks)
    assert "bpda--mart-seed0.json" in info.value.problem
    assert "mart seed 0 is no admitted entry of protocol mnist5k-cnn" in info.value.problem


def test_atbench_leaderboard_reads_attack_records_and_names_a_refused_one(fixture, tmp_path, capsys):
    records, attacks, entries, _, _ = fixture
    boards = tmp_path / "boards"
    folders = ["--records-dir", str(records), "--boards-dir", str(boards)]
    assert main(["leaderboard", *folders, "--attack-records-dir", str(attacks), "-q"]) == 0
    assert f"{PROTOCOL}.attacks.md" in capsys.readouterr().out
    assert "## Best known" in (boards / f"{PROTOCOL}.md").read_text()
    assert main(["leaderboard", *folders, "--attack-records-dir", str(tmp_path / "none"), "-q"]) == 0
    assert "## Best known" not in (boards / f"{PROTOCOL}.md").read_text()
    bad = tmp_path / "bad"
    path = write_attack(bad / PROTOCOL, entries[("pgd-at", 0)], "bpda", {},
                        lambda r: r["entry"].update(checkpoint_sha256="cd" * 32))
    assert main(["leaderboard", *folders, "--attack-records-dir", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "field `entry.checkpoint_sha256`" in err and "refused" in err


def test_admitted_attacks_are_those_of_the_board(fixture):
    records, attacks, _, _, _ = fixture
    admitted = admitted_records(records, PROTOCOL)
    found = board_attacks(attacks, PROTOCOL, admitted)
    assert all(isinstance(a, AdmittedAttack) for a in found)
    assert sorted((a.attack, a.record["entry"]["defense"], a.record["entry"]["seed"]) for a in found) == [
        ("bpda", "mart", 0), ("bpda", "mart", 1), ("bpda", "pgd-at", 0), ("eot-pgd", "pgd-at", 0),
        ("eot-pgd", "trades", 0), ("multi-targeted", "trades", 0)]
    assert board_attacks(None, PROTOCOL, admitted) == []


def test_a_read_only_records_folder_brings_the_attack_records_beside_it(fixture, tmp_path):
    """`--with-official`: the official records come with the official attack records beside them,
    and a folder reached twice (a checkout's records are also the official ones) counts once."""
    records, attacks, _, _, board = fixture
    admitted = admitted_records(tmp_path / "mine" / "records", PROTOCOL, [records])  # no records of mine
    found = board_attacks(tmp_path / "mine" / "attack_records", PROTOCOL, admitted, [records])
    assert sorted(a.path for a in found) == sorted(a.path for a in board_attacks(attacks, PROTOCOL, admitted))
    assert len(found) == 6
    assert len(board_attacks(attacks, PROTOCOL, admitted, [records])) == 6
    assert build_json(admitted, found) == board


def test_run_and_eval_write_their_board_with_the_attack_records_of_their_paths(fixture, tmp_path, monkeypatch):
    """`atbench run` and `eval` publish through the runner, whose board reads the attack records
    of the jobs' `Paths.attack_records_dir` (the option's folder; a missing folder holds none)."""
    import dataclasses
    from types import SimpleNamespace

    from benchmark.commands.parser import build_parser
    from benchmark.pipeline.job import Paths
    from benchmark.pipeline import runner

    monkeypatch.setattr(runner, "check_settings", lambda jobs, records: None)  # no new record to check
    records, attacks, _, _, _ = fixture
    boards = tmp_path / "boards"
    paths = Paths(records_dir=str(records), boards_dir=str(boards), attack_records_dir=str(attacks))
    job = SimpleNamespace(protocol=SimpleNamespace(id=PROTOCOL), paths=paths)
    written = runner.publish_all([job], [])  # nothing new to publish: the board of what is published
    assert boards / f"{PROTOCOL}.attacks.md" in written
    assert "## Best known" in (boards / f"{PROTOCOL}.md").read_text()
    job.paths = dataclasses.replace(paths, attack_records_dir=str(tmp_path / "none"))
    runner.publish_all([job], [])
    assert not any((boards / f"{PROTOCOL}{suffix}").exists() for suffix in ATTACK_BOARD_SUFFIXES)
    assert "## Best known" not in (boards / f"{PROTOCOL}.md").read_text()
    from benchmark.commands.cli import attack_records_dir

    # beside the records folder unless named: `attack` writes where `run`, `eval` and `leaderboard` read
    for command in (["run"], ["eval"], ["leaderboard"], ["attack", "--attack", "bpda"]):
        assert attack_records_dir(build_parser().parse_args(command)) == "leaderboard/attack_records"
        assert attack_records_dir(build_parser().parse_args([*command, "--records-dir", "x/recs"])) == "x/attack_records"
        assert attack_records_dir(build_parser().parse_args([*command, "--attack-records-dir", "a"])) == "a"


def test_markdown_and_the_web_page_print_the_best_known_sentences(fixture):
    import re
    from html import unescape

    from leaderboard.html import render_board_page
    from leaderboard.html_view import inline_html

    records, _, _, _, board = fixture
    markdown = render_markdown(board)
    page = unescape(re.sub(r"<[^>]+>", "", render_board_page(board, [it.record for it in
                                                                     admitted_records(records, PROTOCOL)])))
    section = next(s for s in board["view"]["sections"] if s["id"] == "best-known")
    texts = [b["text"] for b in section["blocks"] if b["kind"] == "paragraph"] + [
        t for b in section["blocks"] if b["kind"] == "items" for t in b["items"]]
    for text in texts:
        assert text in markdown
        assert " ".join(unescape(re.sub(r"<[^>]+>", "", inline_html(text))).split()) in " ".join(page.split())
    assert 'id="best-known"' in render_board_page(board, [it.record for it in admitted_records(records, PROTOCOL)])


def _by_attack(at: dict) -> dict[str, int]:
    """Per attack, the points broken beyond the protocol it broke, from the data."""
    counts: dict[str, int] = {}
    for points in at["best_known_attacks"].values():
        for point in points:
            for name in point["attacks"]:
                counts[name] = counts.get(name, 0) + 1
    return counts


def test_the_detail_panel_shows_the_best_known_figures_of_the_data(fixture):
    """Each attacked entry's panel: per eps its best known beside the protocol's worst case, the points
    broken beyond the protocol with the attacks that broke them (per point: seed, test index, attacks)
    and the paired test's p, all as the board's numbers say; the view's blocks, rendered; nothing for
    an entry no attack record names."""
    import re

    from leaderboard.formats import p_text
    from leaderboard.html import render_board_page
    from leaderboard.html_view import block_html
    from leaderboard.view_best_known import entry_best_known_blocks
    from tests.test_html import body_rows, table_with

    records, _, _, _, board = fixture
    page = render_board_page(board, [it.record for it in admitted_records(records, PROTOCOL)])
    shown = {}
    for x in board["entries"]:
        found = re.search(rf'<details class="entry" id="([^"]+)" data-defense="{re.escape(x["defense"])}">', page)
        anchor, panel = found.group(1), page[found.start():page.index("</details>", found.start())]
        if x["best_known"] is None:
            assert 'class="best-known"' not in panel and "broken beyond" not in panel
            continue
        blocks = entry_best_known_blocks(x, board["eps"], board["statistics"]["alpha"])
        assert "".join(block_html(b, f"{anchor}-") for b in blocks) in panel
        rows = [[c["text"] for c in row["cells"]]
                for row in body_rows(table_with(panel, id=f"{anchor}-table-best-known-eps"))]
        assert [row[0] for row in rows] == [f"eps={e}" for e in board["eps"]]
        for row, e in zip(rows, board["eps"]):
            at = x["best_known"][e]
            assert row[1:3] == [pct(at["protocol"]), pct(at["best_known"])]
            said = 0 if row[3].startswith("no point") else int(row[3].split()[0])
            assert said == at["points_beyond"] == sum(len(v) for v in at["best_known_attacks"].values())
            assert {k: int(n) for k, n in re.findall(r"([\w-]+) (\d+)", row[3].partition("(")[2])} == _by_attack(at)
            assert row[4] == p_text(at["p_value"])
            assert ("overstate this entry" in row[5]) == (at["flag"] is not None) == (at["p_value"] < 0.05)
        broken = {(int(seed), p["index"], e): ", ".join(p["attacks"]) for e in board["eps"]
                  for seed, points in x["best_known"][e]["best_known_attacks"].items() for p in points}
        if not broken:
            assert "best-known-points" not in panel
            continue
        points = body_rows(table_with(panel, id=f"{anchor}-table-best-known-points"))
        table = {(int(r["cells"][0]["text"]), int(r["cells"][1]["text"]), e): r["cells"][2 + k]["text"]
                 for r in points for k, e in enumerate(board["eps"])}
        assert {key: names for key, names in table.items() if names != "-"} == broken
        shown[x["defense"]] = rows, sorted(broken.items())
    # by hand (tests.attack_fixtures): pgd-at's 5 points at eps 0.3, one of them broken by both attacks
    rows, broken = shown["pgd-at"]
    assert rows[-1][3:] == ["5 points broken beyond the protocol (bpda 5, eot-pgd 1)", "0.031",
                            "the protocol's attacks overstate this entry"]
    assert rows[0][3:] == ["no point broken beyond the protocol", "1", "not significant at 0.05"]
    assert [names for _, names in broken] == ["bpda, eot-pgd"] + ["bpda"] * 4
    rows, broken = shown["trades"]
    assert rows[-1][3:] == ["2 points broken beyond the protocol (eot-pgd 2)", "0.25", "not significant at 0.05"]
    rows, broken = shown["mart"]  # two seeds, pooled: 3 + 2 points
    assert rows[-1][3:5] == ["5 points broken beyond the protocol (bpda 5)", "0.031"]
    assert [seed for (seed, _, _), _ in broken] == [0, 0, 0, 1, 1]
