"""The reference training harness: seeded, resumable, selects on validation, stops on NaN."""
import dataclasses
import json

import pytest
import torch

from benchmark.core.errors import AtbenchError
from benchmark.core.io import load_checkpoint
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.pipeline.train import lr_factor, train

TINY = TRACKS.get("synthetic-tiny")


def _weights(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.system
def test_training_writes_checkpoints_and_log(tmp_path):
    result = train(TINY, DEFENSES.get("standard")(), 0, tmp_path, progress=False)
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert len(history) == TINY.epochs
    assert {"epoch", "loss", "val_clean_acc", "val_robust_acc", "lr", "train_eps"} <= set(history[0])
    best = max(range(len(history)), key=lambda i: (history[i]["val_robust_acc"], history[i]["val_clean_acc"], -i))
    assert result.best_epoch == best + 1
    assert result.best_val_robust_acc == history[best]["val_robust_acc"]
    assert (tmp_path / "last.pt").is_file()
    load_checkpoint(result.checkpoint, result.checkpoint_sha256)


@pytest.mark.system
def test_same_seed_same_weights_other_seed_differs(tmp_path):
    defense = DEFENSES.get("pgd-at")()
    a = train(TINY, defense, 0, tmp_path / "a", progress=False)
    b = train(TINY, defense, 0, tmp_path / "b", progress=False)
    train(TINY, defense, 1, tmp_path / "c", progress=False)
    assert a.checkpoint_sha256 == b.checkpoint_sha256
    assert _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    assert not _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "c" / "last.pt"))


@pytest.mark.system
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    track = dataclasses.replace(TINY, epochs=3)
    cls = DEFENSES.get("pgd-at")
    train(track, cls(), 0, tmp_path / "full", progress=False)

    calls = {"n": 0}
    original = cls.loss

    def dies_in_epoch_three(self, model, x, y, ctx):
        if ctx.epoch == 2:
            calls["n"] += 1
            raise KeyboardInterrupt
        return original(self, model, x, y, ctx)

    monkeypatch.setattr(cls, "loss", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train(track, cls(), 0, tmp_path / "cut", progress=False)
    assert calls["n"] == 1 and load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    monkeypatch.setattr(cls, "loss", original)
    train(track, cls(), 0, tmp_path / "cut", progress=False)
    assert _same(_weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt"))
    assert (tmp_path / "full" / "best.pt").read_bytes() == (tmp_path / "cut" / "best.pt").read_bytes()


@pytest.mark.parametrize("best_epoch", [1, 0])
@pytest.mark.system
def test_a_kill_between_last_and_best_checkpoint_is_repaired_or_named(tmp_path, monkeypatch, best_epoch):
    """`last.pt` is written before `best.pt`. Killed between the two, the run's best epoch is the
    last finished one: a resume rebuilds `best.pt` byte for byte from `last.pt`'s weights. A
    `best.pt` that cannot be rebuilt (an earlier best epoch) stops with the file named."""
    from benchmark.pipeline import selection
    from benchmark.pipeline import train as harness

    scores = iter([0.5, 0.6] if best_epoch == 1 else [0.6, 0.5])
    real = selection.validate

    def scripted(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), robust=next(scores))

    monkeypatch.setattr(harness, "validate", scripted)
    track = dataclasses.replace(TINY, epochs=2)
    result = train(track, DEFENSES.get("standard")(), 0, tmp_path, progress=False)
    assert result.best_epoch == best_epoch + 1
    best = (tmp_path / "best.pt").read_bytes()
    (tmp_path / "best.pt").unlink()
    if best_epoch == 1:
        again = train(track, DEFENSES.get("standard")(), 0, tmp_path, progress=False)
        assert (tmp_path / "best.pt").read_bytes() == best and again.checkpoint_sha256 == result.checkpoint_sha256
    else:
        with pytest.raises(AtbenchError, match="best.pt is missing or is not the best checkpoint"):
            train(track, DEFENSES.get("standard")(), 0, tmp_path, progress=False)


@pytest.mark.system
def test_nan_loss_stops_with_a_clear_error_and_keeps_finished_epochs(tmp_path, monkeypatch):
    cls = DEFENSES.get("standard")
    original = cls.loss

    def nan_in_epoch_two(self, model, x, y, ctx):
        loss = original(self, model, x, y, ctx)
        return loss * float("nan") if ctx.epoch == 1 else loss

    monkeypatch.setattr(cls, "loss", nan_in_epoch_two)
    with pytest.raises(AtbenchError) as info:
        train(TINY, cls(), 0, tmp_path, progress=False)
    assert "became nan at epoch 2" in info.value.problem
    assert "learning rate" in info.value.fix
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


@pytest.mark.unit
def test_schedules_and_eps_ramp():
    cosine = dataclasses.replace(TINY, schedule="cosine")
    assert lr_factor(cosine, 0.0) == pytest.approx(1.0) and lr_factor(cosine, 1.0) == pytest.approx(0.0)
    piecewise = dataclasses.replace(TINY, schedule="piecewise", milestones=(0.5, 0.75))
    assert [lr_factor(piecewise, p) for p in (0.1, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    ramp = dataclasses.replace(TINY, eps=0.3, eps_ramp_epochs=3)
    assert [ramp.eps_at(e) for e in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])


@pytest.mark.system
def test_ema_and_sgd_paths_run(tmp_path):
    track = dataclasses.replace(TINY, optimizer="sgd", lr=0.05, schedule="piecewise", milestones=(0.5,),
                                ema_decay=0.9, grad_clip=1.0, epochs=1)
    result = train(track, DEFENSES.get("standard")(), 0, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["ema"] and not _same(state["ema"], state["model"])
    assert _same(_weights(result.checkpoint), state["ema"])


@pytest.mark.unit
def test_ema_warm_up_decay_follows_the_reference():
    from benchmark.pipeline.train import update_ema

    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        ema.weight.fill_(1.0)
        model.weight.fill_(0.0)
    update_ema(ema, model, 0.995, step=0)  # decay min(0.995, 1/10) = 0.1
    assert ema.weight[0, 0].item() == pytest.approx(0.1)
    update_ema(ema, model, 0.995, step=10_000)  # decay 0.995
    assert ema.weight[0, 0].item() == pytest.approx(0.1 * 0.995)


@pytest.mark.system
def test_defenses_see_the_last_validation_per_class_robust_error(tmp_path):
    seen = []

    class Recorder(DEFENSES.get("pgd-at")):
        def on_epoch_start(self, model, ctx):
            seen.append(ctx.val_class_error)

    track = dataclasses.replace(TINY, epochs=3)
    train(track, Recorder(), 0, tmp_path, progress=False)
    history = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert seen[0] is None
    assert [list(s) for s in seen[1:]] == [h["val_class_robust_error"] for h in history[:-1]]
    from benchmark.pipeline.data import load_dataset

    labels = load_dataset(TINY.dataset).val.y[: TINY.val_size]
    counts = torch.bincount(labels, minlength=10).double()
    for h in history:  # the per-class errors average to the overall robust error
        overall = (torch.tensor(h["val_class_robust_error"], dtype=torch.float64) * counts).sum() / counts.sum()
        assert overall.item() == pytest.approx(1 - h["val_robust_acc"], abs=1e-6)
