"""Randomized defenses: majority-vote predictions, AutoAttack version rand, detection of
stochastic outputs; models with NaN logits are reported, not scored."""
import numpy as np
import pytest
import torch
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS
from benchmark.pipeline.assemble import Subject
from benchmark.pipeline.evaluate import predict
from benchmark.pipeline.protocol import load_protocol
from benchmark.pipeline.steps import evaluate_model
from leaderboard.record import load_record
from tests.helpers import tiny_standard_model

pytestmark = pytest.mark.unit


class Flaky(nn.Module):
    """Wraps a model; every third forward pass (1st, 4th, ...) predicts a wrong class."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        logits = self.model(x)
        if self.calls % 3 == 1:
            return logits.roll(1, dims=1)
        return logits


class Noisy(nn.Module):
    """A model with Gaussian noise on its logits at inference (randomized)."""

    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        logits = self.model(x)
        return logits + self.scale * torch.randn_like(logits)


def test_majority_vote_outvotes_a_minority_of_wrong_passes():
    from benchmark.pipeline.data import load_dataset

    x = load_dataset("synthetic").test.x[:50]
    base = tiny_standard_model()
    reference = predict(base, x, torch.device("cpu"))
    flaky = Flaky(base)
    assert (predict(flaky, x, torch.device("cpu"), votes=3) == reference).all()
    assert (predict(Flaky(base), x, torch.device("cpu"), votes=1) != reference).any()


def test_randomized_protocol_switches_autoattack_to_rand_only():
    protocol = load_protocol("mnist5k-cnn")
    rand = protocol.for_randomized()
    for before, after in zip(protocol.columns, rand.columns):
        expected = "rand" if before.attack == "autoattack" else before.settings.get("version")
        assert after.settings.get("version") == expected
    assert rand.sha256 == protocol.sha256 and rand.eps == protocol.eps


def test_stochastic_model_is_evaluated_as_randomized(tmp_path):
    track = TRACKS.get("synthetic-tiny")
    protocol = load_protocol("synthetic-tiny")
    subject = Subject("noisy", {"id": "noisy", "external": True, "sweep": None, "config": {}, "paper": "", "venue": "",
                                "link": "", "fidelity": "reference", "randomized": False, "recipe_overrides": {}},
                      "cnn-tiny", 0, 0.0, "0" * 64)
    path = evaluate_model(Noisy(tiny_standard_model(), 0.5), subject, track, protocol, tmp_path, "cpu", None, False)
    record = load_record(path)
    assert record["sanity"]["stochastic_outputs"]["fired"]
    assert "version='rand'" in record["attacks"]["autoattack"] and "eot_samples=20" in record["attacks"]["autoattack"]
    assert record["votes"] == protocol.analysis.votes == 5
    assert record["clean_acc"] > 0.8


def test_nan_logits_are_reported_not_scored():
    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 10), float("nan"))

    with pytest.raises(AtbenchError, match="NaN or Inf"):
        predict(NaNModel(), torch.rand(4, 1, 8, 8), torch.device("cpu"))
    assert np.array_equal(predict(tiny_standard_model(), torch.zeros(0, 1, 28, 28), torch.device("cpu")),
                          np.zeros(0, dtype=np.int64))
