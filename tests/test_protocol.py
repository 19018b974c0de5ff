"""Protocols: the shipped files load; malformed files fail with the file and field named."""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.errors import AtbenchError
from benchmark.protocol import PROTOCOL_DIR, load_protocol, parse_eps, protocol_for
from benchmark.registry import TRACKS

GOOD = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text()


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_protocols_load(path):
    protocol = load_protocol(path)
    assert protocol.id == path.stem
    assert protocol.primary_eps in protocol.eps
    assert protocol.track in TRACKS


def test_track_protocols_match_the_issue():
    mnist = load_protocol("mnist5k-cnn")
    assert mnist.eps == ("0.1", "0.2", "0.3") and mnist.primary_eps == "0.3" and mnist.norm == "Linf"
    assert {c.attack for c in mnist.columns} == {"autoattack", "pgd", "cw", "tpgd"}
    assert [c.column for c in mnist.columns if c.group == "tpgd"] == ["tpgd-T0.5", "tpgd-T2", "tpgd-T5"]
    cifar = load_protocol("cifar10-prn18")
    assert cifar.n_examples == 10000 and cifar.primary_eps == "8/255"
    assert cifar.eps == ("2/255", "4/255", "8/255", "12/255", "16/255")


def test_cifar10_tracks_have_linf_and_l2_protocols():
    for track in ("cifar10-prn18", "cifar10-wrn34", "cifar10-cnn"):
        linf, l2 = load_protocol(track), load_protocol(f"{track}-l2")
        assert linf.track == l2.track == track and TRACKS.get(track).protocol == track
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
    ('version = 1', 'version = "1"', "version"),
    ('version = 1', '', "version"),
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


def test_sha256_follows_content(tmp_path):
    a = load_protocol(_write(tmp_path, GOOD))
    b = load_protocol(_write(tmp_path, GOOD + "\n# a comment changes the file\n"))
    assert a.sha256 != b.sha256


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
