"""Every registered defense honours the interface; the baselines compute their papers' losses;
adversarial training beats standard training under attack."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from attacks.pgd import PGD
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.train import train
from defenses.base import FIDELITIES, TrainContext
from defenses.mart import boosted_ce
from defenses.trades import trades_kl


def _ctx(eps=0.1, seed=0):
    return TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=eps, attack_steps=3,
                        step_size=eps / 4, num_classes=10, generator=torch.Generator().manual_seed(seed))


def _tiny():
    torch.manual_seed(0)
    bundle = load_dataset("synthetic")
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    return model, bundle.train.x[:32], bundle.train.y[:32]


@pytest.mark.parametrize("name", DEFENSES.names())
@pytest.mark.unit
def test_metadata_and_config_round_trip(name):
    cls = DEFENSES.get(name)
    assert cls.name == name
    assert cls.meta.paper and cls.meta.venue and cls.meta.fidelity in FIDELITIES
    assert cls.meta.link.startswith("https://") or name == "standard"
    defense = cls()
    assert dataclasses.is_dataclass(defense.config)
    assert cls.Config(**defense.config_dict()) == defense.config
    assert json.loads(json.dumps(defense.config_dict())) == defense.config_dict()  # records hold it as JSON
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(defense.config, "x", 1)


@pytest.mark.parametrize("name", DEFENSES.names())
@pytest.mark.unit
def test_two_training_steps_change_the_weights_and_loss_is_finite(name):
    model, x, y = _tiny()
    defense = DEFENSES.get(name)()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for step in range(2):
        loss = defense.loss(model, x, y, _ctx())
        assert loss.dim() == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.training
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.unit
def test_trades_kl_is_zero_on_identical_logits_and_positive_otherwise():
    logits = torch.randn(8, 10)
    assert trades_kl(logits, logits).item() == pytest.approx(0.0, abs=1e-7)
    assert trades_kl(logits, logits + torch.randn(8, 10)).item() > 0


@pytest.mark.unit
def test_trades_loss_matches_the_formula():
    model, x, y = _tiny()
    defense = DEFENSES.get("trades")()
    loss = defense.loss(model, x, y, _ctx(seed=3))
    from defenses.trades import kl_adversarial_examples

    x_adv = kl_adversarial_examples(model, x, _ctx(seed=3))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    expected = F.cross_entropy(model(x), y) + 6.0 * F.kl_div(
        F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="batchmean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.unit
def test_mart_boosted_ce_matches_the_formula():
    logits = torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    p = F.softmax(logits, 1)
    other = p.clone()
    other[torch.arange(6), y] = -1
    expected = F.cross_entropy(logits, y) - torch.log(1.0001 - other.max(1).values + 1e-12).mean()
    assert boosted_ce(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.system
def test_adversarial_training_beats_standard_training_under_attack(tmp_path):
    """On real digits (scikit-learn), PGD-AT is far more robust to PGD-20 than standard training."""
    track = dataclasses.replace(TRACKS.get("synthetic-tiny"), dataset="digits", epochs=8, eps=0.2,
                                attack_steps=5, step_ratio=0.4, lr=1e-2, val_size=200)
    bundle = load_dataset("digits")
    x, y = bundle.test.x, bundle.test.y
    robust = {}
    for name in ("standard", "pgd-at"):
        result = train(track, DEFENSES.get(name)(), 0, tmp_path / name, progress=False)
        model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
        model.load_state_dict(torch.load(result.checkpoint, weights_only=True)["model"])
        x_adv = PGD(steps=20)(model, x, y, 0.2)
        with torch.no_grad():
            robust[name] = (model(x_adv).argmax(1) == y).float().mean().item()
    assert robust["pgd-at"] > robust["standard"] + 0.3, robust


@pytest.mark.unit
def test_track_settings_replace_defaults_are_disclosed_and_key_only_their_defense():
    from benchmark.pipeline.assemble import defense_block
    from benchmark.pipeline.train import train_key

    track = dataclasses.replace(TRACKS.get("mnist5k-cnn"), defense_configs={"crm-liplt": {"mu": 300.0, "r0": 8.0}})
    crm = track.defense("crm-liplt")
    assert (crm.config.mu, crm.config.r0) == (300.0, 8.0) and DEFENSES.get("crm-liplt")().config.mu == 15.0
    block = defense_block(crm, track)
    assert block["config"]["mu"] == 300.0 and block["recipe_overrides"]["config.mu"] == 300.0
    assert block["recipe_overrides"]["optimizer"] == "adam" and block["recipe_overrides"]["burn_in_epochs"] == 1
    bare = dataclasses.replace(track, defense_configs={})
    pgd_at = track.defense("pgd-at")
    assert train_key(track, pgd_at, 0) == train_key(bare, pgd_at, 0)
    assert train_key(track, crm, 0) != train_key(bare, bare.defense("crm-liplt"), 0)


@pytest.mark.unit
def test_dyart_overrides_scale_the_burn_in_to_the_track():
    dyart = DEFENSES.get("dyart")()
    assert dyart.overrides(TRACKS.get("mnist5k-cnn")) == {"burn_in_epochs": 1, "ema_decay": 0.995}
    assert dyart.overrides(TRACKS.get("cifar10-prn18"))["burn_in_epochs"] == round(110 * 10 / 200)
