"""Attack records: hand-made flags against a hand-made entry, admitted or refused
(`leaderboard.attack_admission`), and the best-known worst case computed from them
(`leaderboard.best_known`), every number checked by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_bytes
from benchmark.pipeline.evaluate import flags_npz_bytes
from leaderboard.attack_admission import admit_attack, admitted_attacks
from leaderboard.attack_record import attack_record_name, build_attack_record, load_attack_record
from leaderboard.best_known import OVERSTATED, best_known
from leaderboard.evidence import worst_flags
from tests.fixtures_records import consistent

pytestmark = pytest.mark.unit

EPS = ("0.1", "0.2", "0.3")
SHA = "ab" * 32


@pytest.fixture
def entry():
    """pgd-at seed 0: 300 points, eps 0.1, 0.2, 0.3, attacks autoattack and pgd."""
    return consistent("pgd-at", 0, robust=0.8)


def entries(entry):
    return {("pgd-at", 0): entry}


def write_attack(folder, entry, attack: str, broken: dict[str, list[int]], edit=None):
    """An attack record of `entry` (any defense and seed, at its protocol's eps) whose flags break,
    at each eps (and every larger one), the given positions; `edit(record)` changes the record
    after its numbers are derived. Returns its path."""
    clean = entry.flags.flags["clean"]
    defense, seed, eps_list = entry.record["defense"]["id"], entry.record["seed"], entry.record["protocol"]["eps"]
    flags, alive = {"clean": clean.copy()}, clean.copy()
    for eps in eps_list:
        alive = alive.copy()
        alive[broken.get(eps, [])] = False
        flags[f"{attack}@{eps}"] = alive
    data = flags_npz_bytes(flags, entry.flags.labels, entry.flags.indices)
    name = attack_record_name(attack, defense, seed)
    record = build_attack_record(
        attack={"id": attack, "config": f"{attack}.Config(seed=0)", "source": "file", "source_sha256": SHA},
        entry={"track": entry.record["track"], "defense": defense, "seed": seed,
               "external": entry.record["defense"]["external"],
               "checkpoint_sha256": entry.record["provenance"]["checkpoint_sha256"]},
        protocol=entry.record["protocol"], votes=1, clean_correct=int(clean.sum()),
        broken={e: int((clean & ~flags[f"{attack}@{e}"]).sum()) for e in eps_list},
        flags={"file": f"{name}.flags.npz", "sha256": sha256_bytes(data)}, runtime_s=1.5,
        provenance={"atbench_version": "0.1.0", "git_commit": None, "git_dirty": False, "packages": {},
                    "python": "3.11.7", "device": "cpu", "seeds": {"attack": 0, "test_subset": 0},
                    "data_sha256": SHA, "test_subset_sha256": SHA, "utc_time": "2026-12-01T00:00:00Z"})
    if edit is not None:
        edit(record)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.flags.npz").write_bytes(data)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record))
    return path


def robust_positions(entry, eps: str, count: int, offset: int = 0) -> list[int]:
    """`count` positions robust under the protocol's worst case at `eps`."""
    return [int(i) for i in np.flatnonzero(worst_flags(entry, eps))[offset:offset + count]]


def admitted(path, entry):
    return admit_attack(load_attack_record(path), path, entries(entry))


def test_a_faithful_record_is_admitted_and_counts_its_broken_points(tmp_path, entry):
    points = robust_positions(entry, "0.1", 3)
    path = write_attack(tmp_path / "synthetic-tiny", entry, "bpda", {"0.1": points})
    item = admitted(path, entry)
    assert item.record["broken"] == {"0.1": 3, "0.2": 3, "0.3": 3}  # broken at 0.1, so at every larger eps
    assert item.record["clean_correct"] == int(entry.flags.flags["clean"].sum())
    assert not item.robust("0.1")[points].any()


def test_a_record_claiming_more_broken_points_than_its_flags_show_is_refused(tmp_path, entry):
    def claim_more(record):
        record["broken"] = {"0.1": 4, "0.2": 12, "0.3": 12}

    path = write_attack(tmp_path, entry, "bpda", {"0.1": robust_positions(entry, "0.1", 2)}, claim_more)
    with pytest.raises(AtbenchError) as info:
        admitted(path, entry)
    assert str(path) in info.value.problem
    assert "field `broken.0.1`: the record claims 4 broken points, its flags show 2" in info.value.problem
    assert "refused" in info.value.problem


def test_a_flags_file_that_is_not_the_recorded_one_is_refused(tmp_path, entry):
    path = write_attack(tmp_path, entry, "bpda", {"0.1": [0]})
    flags = tmp_path / "bpda--pgd-at-seed0.flags.npz"
    data = flags.read_bytes()
    flags.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(AtbenchError, match="field `flags.sha256`: the flags file's sha256 differs"):
        admitted(path, entry)


def test_an_unknown_entry_is_refused(tmp_path, entry):
    path = write_attack(tmp_path, entry, "bpda", {})
    with pytest.raises(AtbenchError, match="pgd-at seed 0 is no admitted entry of protocol mnist5k-cnn"):
        admit_attack(load_attack_record(path), path, {("trades", 0): entry})


def test_another_checkpoint_than_the_entry_records_is_refused(tmp_path, entry):
    def other_checkpoint(record):
        record["entry"]["checkpoint_sha256"] = "cd" * 32

    path = write_attack(tmp_path, entry, "bpda", {}, other_checkpoint)
    with pytest.raises(AtbenchError, match=r"field `entry.checkpoint_sha256`: is 'cdcd.*but the entry's record has"):
        admitted(path, entry)


def test_another_protocol_than_the_entry_records_is_refused(tmp_path, entry):
    def other_protocol(record):
        record["protocol"]["sha256"] = "cd" * 32

    path = write_attack(tmp_path, entry, "bpda", {}, other_protocol)
    with pytest.raises(AtbenchError, match="field `protocol`: differs from the entry record's protocol block"):
        admitted(path, entry)


def test_a_point_misclassified_clean_can_never_count_as_broken_by_the_attack(tmp_path, entry):
    wrong = int(np.flatnonzero(~entry.flags.flags["clean"])[0])
    path = write_attack(tmp_path, entry, "bpda", {})
    item = admitted(path, entry)
    assert not item.robust("0.1")[wrong] and item.record["broken"]["0.1"] == 0
    assert best_known(entry, [item])["0.1"].broken_beyond == {}
    # flags that call such a point robust, or copy other clean flags, are refused
    data = dict(np.load(tmp_path / "bpda--pgd-at-seed0.flags.npz"))
    data["clean"] = data["clean"].copy()
    data["clean"][wrong] = True
    forged = flags_npz_bytes({k: v for k, v in data.items() if k not in ("labels", "indices")}, data["labels"],
                             data["indices"])
    (tmp_path / "bpda--pgd-at-seed0.flags.npz").write_bytes(forged)
    record = load_attack_record(path)
    record["flags"]["sha256"] = sha256_bytes(forged)
    with pytest.raises(AtbenchError, match="its clean flags differ from the entry's at 1 points"):
        admit_attack(record, path, entries(entry))


def test_best_known_per_point_with_the_attacks_named_and_the_exact_paired_test(tmp_path, entry):
    protocol = {e: worst_flags(entry, e) for e in EPS}
    four = robust_positions(entry, "0.1", 4)
    two = robust_positions(entry, "0.1", 2, offset=3)  # shares position four[3] with the first attack
    already = int(np.flatnonzero(entry.flags.flags["clean"] & ~protocol["0.1"])[0])  # the protocol broke it
    first = admitted(write_attack(tmp_path, entry, "bpda", {"0.1": [*four, already]}), entry)
    second = admitted(write_attack(tmp_path, entry, "eot-pgd", {"0.1": two}), entry)
    result = best_known(entry, [first, second])

    at = result["0.1"]
    beyond = sorted({*four, *two})  # 5 points: p = 0.5 ** 5 = 0.03125 < 0.05
    assert at.protocol_acc == pytest.approx(protocol["0.1"].mean())
    assert at.best_known_acc == pytest.approx((protocol["0.1"].sum() - 5) / 300)
    assert at.broken_beyond == {four[0]: ("bpda",), four[1]: ("bpda",), four[2]: ("bpda",),
                                four[3]: ("bpda", "eot-pgd"), two[1]: ("eot-pgd",)}
    assert len(beyond) == 5 and at.p_value == pytest.approx(0.5 ** 5)
    assert at.flag == OVERSTATED == "the protocol's attacks overstate this entry"
    # at larger eps the points the protocol already broke there do not count
    for eps in ("0.2", "0.3"):
        still = [i for i in beyond if protocol[eps][i]]
        assert sorted(result[eps].broken_beyond) == still
        assert result[eps].p_value == pytest.approx(0.5 ** len(still) if still else 1.0)
        assert result[eps].best_known_acc == pytest.approx((protocol[eps].sum() - len(still)) / 300)


def test_four_points_beyond_the_protocol_are_not_significant_and_none_give_p_1(tmp_path, entry):
    item = admitted(write_attack(tmp_path, entry, "bpda", {"0.3": robust_positions(entry, "0.3", 4)}), entry)
    result = best_known(entry, [item])
    assert result["0.3"].p_value == pytest.approx(0.0625) and result["0.3"].flag is None
    assert result["0.1"].p_value == 1.0 and result["0.1"].flag is None
    assert result["0.1"].best_known_acc == result["0.1"].protocol_acc
    assert best_known(entry, [])["0.3"].best_known_acc == result["0.3"].protocol_acc


def test_records_of_a_folder_are_admitted_together(tmp_path, entry):
    write_attack(tmp_path / "mnist5k-cnn", entry, "bpda", {"0.2": [0]})
    write_attack(tmp_path / "mnist5k-cnn", entry, "multi-targeted", {})
    found = admitted_attacks(tmp_path, "mnist5k-cnn", entries(entry))
    assert [a.attack for a in found] == ["bpda", "multi-targeted"]
    assert admitted_attacks(tmp_path, "smoke", entries(entry)) == []
