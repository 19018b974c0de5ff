"""Small shared builders for tests: a tiny trained model and tiny protocols."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset


@functools.cache
def tiny_standard_model(epochs: int = 3) -> torch.nn.Module:
    """A cnn-tiny standard-trained for a few epochs on the synthetic data set (seeded)."""
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(bundle.train.y), generator=gen)
        for idx in perm.split(64):
            loss = F.cross_entropy(model(bundle.train.x[idx]), bundle.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def white_box_protocol(tmp_dir):
    """The synthetic-tiny protocol without its AutoAttack block, written into `tmp_dir`
    (for tests of evaluation bookkeeping that do not need AutoAttack's cost)."""
    from benchmark.pipeline.protocol import PROTOCOL_DIR, load_protocol

    text = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text()
    block = '[[attacks]]\nname = "autoattack"\nversion = "standard"\nseed = 0\n\n'
    assert block in text
    path = tmp_dir / "white-box.toml"
    path.write_text(text.replace(block, "").replace('id = "synthetic-tiny"', 'id = "synthetic-tiny-white-box"'))
    return load_protocol(path)


def run_track(track: str, defenses, seeds=(0,), *, runs_dir, records_dir, boards_dir, progress: bool = False,
              protocol: str | None = None, jobs: int | None = None, defense_files=(), stage: str = "train+eval",
              data_dir: str | None = None):
    """What `atbench run` does, as a library call: plan the jobs and execute them; returns the
    runner's `Outcome` (records in the run folders and the board files)."""
    from benchmark.core.plugins import load_defense_files
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.job import Options, Paths, plan
    from benchmark.pipeline.protocol import protocol_for
    from benchmark.pipeline.runner import Executor, execute

    load_defense_files(defense_files)
    chosen = TRACKS.get(track)
    paths = Paths(str(runs_dir), str(records_dir), str(boards_dir), data_dir)
    options = Options(progress=progress, defense_files=tuple(defense_files))
    planned = plan(chosen, protocol_for(chosen, protocol), defenses, tuple(seeds), "cpu", paths, options)
    return execute(planned, stage, Executor(workers=jobs))


def tiny_mlp(n_test: int = 64, seed: int = 0, *, eval_layers: bool = True):
    """A small MLP trained for 60 full-batch Adam steps on noisy 1x8x8 class prototypes (10
    classes, as AutoAttack's 9 targets need), and `n_test` test points; with `eval_layers` it
    has BatchNorm and Dropout, so eval mode matters (about 86% clean accuracy)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 1, 8, 8, generator=g)

    def draw(n):
        y = torch.randint(0, 10, (n,), generator=g)
        return (protos[y] + 0.6 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1), y

    x_train, y_train = draw(256)
    x, y = draw(n_test)
    torch.manual_seed(seed)
    middle = [nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1)] if eval_layers else [nn.ReLU()]
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), *middle, nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x_train), y_train).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval(), x, y


def bench_workload(tmp_dir):
    """The tiny model and 80 synthetic test points under the white-box synthetic-tiny protocol
    at three eps where the model is partly robust (survivors and inherited breaks both occur),
    for the bench cases and their pytest-benchmark timings."""
    import dataclasses

    from benchmark.commands.bench import Workload
    from benchmark.core.registry import TRACKS

    bundle = load_dataset("synthetic")
    protocol = dataclasses.replace(white_box_protocol(tmp_dir), eps=("0.1", "0.13", "0.16"))
    return Workload("tiny", tiny_standard_model(), protocol, bundle.test.x[:80], bundle.test.y[:80], "cpu",
                    TRACKS.get("synthetic-tiny"))


def ten_class_bench_workload():
    """A 10-class model (AutoAttack's targeted attacks need 9 targets) at an eps where it is
    partly robust, under the synthetic-tiny protocol (AutoAttack included)."""
    import dataclasses

    from benchmark.commands.bench import Workload
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.protocol import load_protocol

    model, x, y = tiny_mlp(60)
    protocol = dataclasses.replace(load_protocol("synthetic-tiny"), eps=("0.05",), primary_eps="0.05")
    return Workload("tiny-mlp", model, protocol, x, y, "cpu", TRACKS.get("synthetic-tiny"))
