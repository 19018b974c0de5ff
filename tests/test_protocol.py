"""Protocols: the shipped files load; malformed files fail with the file and field named."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import select_test_subset
from benchmark.pipeline.protocol import (
    PROTOCOL_DIR,
    load_protocol,
    parse_eps,
    protocol_for,
)

pytestmark = pytest.mark.unit

GOOD = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text()


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_protocols_load(path):
    protocol = load_protocol(path)
    assert protocol.id == path.stem
    assert protocol.primary_eps in protocol.eps
    assert any(t.dataset == protocol.dataset for t in map(TRACKS.get, TRACKS.names()))


def test_track_protocols_match_the_issue():
    mnist = load_protocol("mnist5k-cnn")
    assert mnist.eps == ("0.1", "0.2", "0.3") and mnist.primary_eps == "0.3" and mnist.norm == "Linf"
    assert {c.attack for c in mnist.columns} == {"autoattack", "pgd", "cw", "tpgd"}
    assert [c.column for c in mnist.columns if c.group == "tpgd"] == ["tpgd-T0.5", "tpgd-T2", "tpgd-T5"]
    cifar = load_protocol("cifar10-prn18")
    assert cifar.n_examples == 10000 and cifar.primary_eps == "8/255"
    assert cifar.eps == ("2/255", "4/255", "8/255", "12/255", "16/255")


def test_the_default_boards_points_are_among_the_l2_boards():
    """Version 3 of mnist5k-cnn takes 100 points (10 per class), the L2 protocol keeps version 2's
    200: the same stratified draw, so the default's points are the first 10 of each class of the L2's."""
    default, l2 = load_protocol("mnist5k-cnn"), load_protocol("mnist5k-cnn-l2")
    assert (default.version, default.n_examples, l2.n_examples) == (3, 100, 200)
    labels = load_dataset(default.dataset).test.y.numpy()
    small = select_test_subset(labels, default.n_examples, default.subset_seed)
    large = select_test_subset(labels, l2.n_examples, l2.subset_seed)
    assert set(small) < set(large) and np.bincount(labels[small]).tolist() == [10] * 10


def test_cifar10_tracks_have_linf_and_l2_protocols():
    for track in ("cifar10-prn18", "cifar10-wrn34", "cifar10-cnn"):
        linf, l2 = load_protocol(track), load_protocol(f"{track}-l2")
        assert linf.dataset == l2.dataset == TRACKS.get(track).dataset and TRACKS.get(track).protocol == track
        assert linf.n_examples == l2.n_examples == 10000
        assert linf.eps == ("2/255", "4/255", "8/255", "12/255", "16/255") and linf.primary_eps == "8/255"
        assert l2.norm == "L2" and l2.eps == ("0.25", "0.5", "1.0") and l2.primary_eps == "0.5"
        assert all(c.settings["norm"] == "L2" for c in l2.columns)


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.3") == pytest.approx(0.3)
    for bad in ("abc", "-0.1", "0", "1/0"):
        with pytest.raises(ValueError):
            parse_eps(bad)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old,new,field", [
    ('version = 2', 'version = "1"', "version"),
    ('version = 2', '', "version"),
    ('norm = "Linf"', 'norm = "L7"', "norm"),
    ('eps = ["0.05", "0.1", "0.2"]', 'eps = ["0.2", "0.1"]', "eps"),
    ('eps = ["0.05", "0.1", "0.2"]', 'eps = ["0.05", "zero"]', "eps"),
    ('primary_eps = "0.1"', 'primary_eps = "0.3"', "primary_eps"),
    ('n = 40', 'n = -1', "test_subset.n"),
    ('n = 40', 'n = 40\nsize = 3', "test_subset.size"),
    ('id = "synthetic-tiny"', 'id = "synthetic-tiny"\ncolour = "red"', "colour"),
    ('temperatures = [0.5, 2.0]', 'temperatures = [0.5, -2.0]', "attacks[3].temperatures"),
    ('kappa = 0.0', 'kappa = "0"', "attacks[2].kappa"),
    ('step_ratio = 0.25', 'step_ratio = inf', "attacks[1].step_ratio"),
    ('steps = 5', 'steps = 5.5', "attacks[1].steps"),
    ('steps = 5', 'steps = 100000000', "attacks[1].steps"),
    ('steps = 5', 'steps = -1', "attacks[1].steps"),
    ('restarts = 1', 'restarts = 1000', "attacks[1].restarts"),
    ('seed = 0\n\n[[attacks]]\nname = "cw"', 'seed = -1\n\n[[attacks]]\nname = "cw"', "attacks[1].seed"),
    ('eps = ["0.05", "0.1", "0.2"]', 'eps = ["0.05", "0.1", "5"]', "eps"),
    ('n = 40', 'n = 10000000', "test_subset.n"),
    ('id = "synthetic-tiny"', 'id = "../escape"', "id"),
    ('adversarial_steps = 5', 'adversarial_steps = 0', "analysis.margins.adversarial_steps"),
    ('adversarial_steps = 5', 'adversarial_steps = 5\nbins = 3', "analysis.margins.bins"),
    ('include = ["suites/analysis.toml"]', '', "analysis.votes"),
    ('seed = 0\n\n[[attacks]]\nname = "cw"', 'seed = true\n\n[[attacks]]\nname = "cw"', "attacks[1].seed"),
    ('dataset = "synthetic"', 'dataset = "cifar11"', "dataset"),
])
def test_malformed_protocol_names_file_and_field(tmp_path, old, new, field):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(AtbenchError) as info:
        load_protocol(path)
    assert str(path) in info.value.problem
    assert f"'{field}'" in info.value.problem


def test_unknown_attack_and_bad_setting_are_named(tmp_path):
    with pytest.raises(AtbenchError, match="unknown attack 'pgdd'"):
        load_protocol(_write(tmp_path, GOOD.replace('name = "pgd"', 'name = "pgdd"')))
    with pytest.raises(AtbenchError, match=r"field 'attacks\[2\].wobble' is not a setting of attack 'cw'"):
        load_protocol(_write(tmp_path, GOOD.replace("kappa = 0.0", "kappa = 0.0\nwobble = 3")))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(AtbenchError, match="not valid TOML"):
        load_protocol(_write(tmp_path, GOOD[: len(GOOD) // 2] + "[[["))
    with pytest.raises(AtbenchError, match="does not exist"):
        load_protocol("no-such-protocol")


def test_sha256_follows_the_resolved_content_not_the_text(tmp_path):
    a = load_protocol(_write(tmp_path, GOOD))
    b = load_protocol(_write(tmp_path, GOOD + "\n# a comment does not change the content\n"))
    c = load_protocol(_write(tmp_path, GOOD.replace("n = 40", "n = 41")))
    assert a.sha256 == b.sha256 != c.sha256


def test_an_included_suite_is_one_edit_for_every_protocol(tmp_path):
    suites = tmp_path / "suites"
    suites.mkdir()
    suite = (PROTOCOL_DIR / "suites" / "attacks-50.toml").read_text()
    (suites / "attacks-50.toml").write_text(suite)
    head = 'version = 1\ninclude = ["suites/attacks-50.toml", "suites/analysis.toml"]\ndataset = "mnist5k"\n' \
           'norm = "Linf"\neps = ["0.3"]\nprimary_eps = "0.3"\n[test_subset]\nn = 10\nseed = 0\n'
    for name in ("one", "two"):
        (tmp_path / f"{name}.toml").write_text(f'id = "{name}"\n' + head)
    before = [load_protocol(tmp_path / f"{n}.toml") for n in ("one", "two")]
    assert all([c.settings.get("steps") for c in p.columns][1] == 50 for p in before)
    (suites / "attacks-50.toml").write_text(suite.replace("steps = 50", "steps = 60"))
    after = [load_protocol(tmp_path / f"{n}.toml") for n in ("one", "two")]
    assert all([c.settings.get("steps") for c in p.columns][1] == 60 for p in after)
    assert all(a.sha256 != b.sha256 for a, b in zip(before, after))
    assert before[0].analysis == load_protocol("mnist5k-cnn").analysis  # the shipped suite, found by fallback


def test_cifar_variants_inherit_and_override(tmp_path):
    base, wrn, cnn = (load_protocol(p) for p in ("cifar10-prn18", "cifar10-wrn34", "cifar10-cnn"))
    assert base.columns == wrn.columns == cnn.columns and wrn.id == "cifar10-wrn34"
    assert base.certified_radii == () and cnn.certified_radii == ("0.25", "0.5", "1.0")


def test_include_cycles_and_missing_files_are_refused(tmp_path):
    (tmp_path / "a.toml").write_text('include = "b.toml"\n')
    (tmp_path / "b.toml").write_text('include = "a.toml"\n')
    with pytest.raises(AtbenchError, match="cycle"):
        load_protocol(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('include = "nowhere.toml"\n')
    with pytest.raises(AtbenchError, match="nowhere.toml does not exist"):
        load_protocol(tmp_path / "c.toml")


def test_a_file_posing_as_a_shipped_protocol_is_refused(tmp_path):
    path = _write(tmp_path, GOOD.replace('eps = ["0.05", "0.1", "0.2"]', 'eps = ["0.05", "0.1", "0.3"]'))
    with pytest.raises(AtbenchError, match="differs from the shipped protocol"):
        protocol_for(TRACKS.get("synthetic-tiny"), path)
    renamed = _write(tmp_path, GOOD.replace('id = "synthetic-tiny"', 'id = "synthetic-tiny-wide"'))
    assert protocol_for(TRACKS.get("synthetic-tiny"), renamed).id == "synthetic-tiny-wide"
    assert protocol_for(TRACKS.get("synthetic-tiny"), _write(tmp_path, GOOD)).id == "synthetic-tiny"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(GOOD)), junk=st.text(max_size=8))
def test_truncated_or_garbled_protocols_fail_cleanly(tmp_path, cut, junk):
    path = _write(tmp_path, GOOD[:cut] + junk)
    try:
        load_protocol(path)
    except AtbenchError as exc:
        assert str(path) in exc.problem or "protocol" in exc.problem


def test_a_protocol_for_another_data_set_is_refused_for_a_track():
    with pytest.raises(AtbenchError, match="is for data set 'mnist5k', but track 'synthetic-tiny' uses 'synthetic'"):
        protocol_for(TRACKS.get("synthetic-tiny"), "mnist5k-cnn")
    assert protocol_for(TRACKS.get("synthetic-tiny")).id == "synthetic-tiny"


def test_the_settings_tables_of_docs_protocols_md_are_current():
    from benchmark.pipeline.protocol_doc import DOC_PATH, doc_with_settings

    text = DOC_PATH.read_text()
    assert text == doc_with_settings(text), \
        "docs/protocols.md is stale: run `python -m benchmark.pipeline.protocol_doc`"
    assert "| `pgd.steps` | int | [0, 10000] |" in text and "| `sanity.square_null_rate` |" in text
