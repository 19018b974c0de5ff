"""The reference training harness: one loop for every defense (device-agnostic, GPU-first).

The harness owns the loop, optimiser, schedule, mixed precision, EMA, checkpoints, seeds and
logs; the defense owns only its loss. The checkpoint kept is the one with the best score of the
defense's own objective on the validation split (never the test set; `DefenseMeta.selection`,
`SELECTION_RULES`): worst-case robust accuracy over CE-PGD and CW-PGD, ties broken by clean
accuracy, or, for a certified-training method, certified L2 accuracy first. Training resumes
from `last.pt`.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from benchmark.core.cost import max_known, peak_memory_mib, reset_peak_memory
from benchmark.core.errors import AtbenchError
from benchmark.core.io import (
    atomic_write_bytes,
    atomic_write_text,
    checkpoint_bytes,
    load_verified_checkpoint,
    remove_stale_temp_files,
    save_verified_checkpoint,
    sha256_bytes,
    sha256_file,
    sha256_json,
)
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import (
    DataBundle,
    Split,
    augment,
    iterate_batches,
    load_dataset,
)
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.selection import certified_selection_score, validate
from benchmark.pipeline.tracks import Track
from defenses.base import Defense, TrainContext

log = logging.getLogger(__name__)
#: Bumped whenever training computes something new (records carry it; boards refuse mixtures).
HARNESS_VERSION = 3



@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What training produced: the selected checkpoint, how it was chosen, and the fast-path
    settings it was trained with (`FastPath.settings`; empty for the plain path)."""

    checkpoint: str
    checkpoint_sha256: str
    best_epoch: int
    best_val_robust_acc: float
    best_val_clean_acc: float
    epochs: int
    runtime_s: float
    train_key: str
    fast_path: tuple[str, ...] = ()
    best_val_certified_acc: float | None = None
    peak_memory_mib: float | None = None


def check_supports(cls: type[Defense], track: Track) -> None:
    """Raise unless the defense declares the track's threat model (`meta.threat_models`, or
    `meta.any_track_norm`) and, when it declares architectures, the track's architecture.

    Raises:
        AtbenchError: naming the defense, the track and what it declares.
    """
    if track.norm not in cls.meta.threat_models and not cls.meta.any_track_norm:
        raise AtbenchError(f"defense {cls.name!r} declares the threat models {', '.join(cls.meta.threat_models)}, "
                           f"not the {track.norm} threat model of track {track.name!r}",
                           "run it on a track of a threat model it declares (`atbench ls tracks`), or add the norm "
                           "to its meta.threat_models once its loss handles it")
    archs = cls.meta.architectures
    if archs is not None and track.model not in archs:
        raise AtbenchError(f"defense {cls.name!r} does not support architecture {track.model!r} "
                           f"of track {track.name!r}",
                           f"run it on a track with one of: {', '.join(archs)}")


def supports(cls: type[Defense], track: Track) -> bool:
    """Whether the harness trains the defense on the track (`check_supports` passes)."""
    try:
        check_supports(cls, track)
    except AtbenchError:
        return False
    return True


def effective_track(track: Track, defense: Defense) -> Track:
    """The track with the defense's disclosed recipe overrides applied."""
    return track.with_overrides(defense.overrides(track))


@functools.cache
def defense_source_sha256(cls: type[Defense]) -> str | None:
    """sha256 of the source files of a defense class and of the classes it inherits from (the
    file in `defenses/`, a `--defense-file` or an installed plugin's module; not
    `defenses/base.py`, whose changes are harness changes and bump `HARNESS_VERSION`), read once
    per process: a defense whose code changed is trained and evaluated again. Modules those
    files import are not covered. None when a class has no source file (defined interactively).
    """
    files = []
    for klass in cls.__mro__:
        if klass in Defense.__mro__:
            continue
        try:
            path = inspect.getsourcefile(klass)
        except TypeError:  # a built-in or a class without a module file
            return None
        if path is None:
            return None
        files.append(path)
    try:
        return sha256_json([sha256_file(f) for f in dict.fromkeys(files)])
    except OSError:
        return None


def train_key(track: Track, defense: Defense, seed: int, fast: FastPath = FastPath()) -> str:
    """Hash of everything that determines the trained weights: the harness version, the track's
    settings (not those for other defenses), the defense's name, config and source
    (`defense_source_sha256`), the seed, and the fast path's settings when one is on (so a
    plain run keeps its key and a fast-path run never shares a plain run's checkpoint)."""
    settings = {k: v for k, v in effective_track(track, defense).to_dict().items() if k != "defense_configs"}
    return sha256_json({
        "harness": HARNESS_VERSION, "track": settings,
        "defense": defense.name, "config": defense.config_dict(), "source": defense_source_sha256(type(defense)),
        "seed": seed, **({"fast_path": list(fast.settings())} if fast.settings() else {}),
    })


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded explicitly (never from the clock)."""
    return torch.Generator().manual_seed(seed)


def make_optimizer(track: Track, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum or Adam, as the track says."""
    if track.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=track.lr, momentum=track.momentum,
                               weight_decay=track.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=track.lr, weight_decay=track.weight_decay)


def lr_factor(track: Track, progress: float) -> float:
    """Learning-rate multiplier at `progress` in [0, 1] of training."""
    if track.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if track.schedule == "piecewise":
        return 0.1 ** sum(progress >= m for m in track.milestones)
    return 1.0


def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model for parameters, with the warm-up decay
    d = min(decay, (1 + step) / (10 + step)) (so early averages are not dominated by the
    initial weights); buffers are copied."""
    decay = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


class TrainingRun:
    """The mutable state of one training run, saved in `last.pt` after every epoch."""

    def __init__(self, track: Track, defense: Defense, bundle: DataBundle, seed: int, device: torch.device,
                 fast: FastPath | None = None):
        fast = fast or FastPath.for_device(device)
        torch.manual_seed(seed)
        model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
        self.model = fast.prepare_model(model.to(device))
        self.forward = fast.forward_model(self.model)
        self.fast = fast
        self.ema = copy.deepcopy(self.model) if track.ema_decay else None
        self.optimizer = make_optimizer(track, self.model)
        self.shuffle_gen = seeded_generator(seed)
        self.defense_gen = seeded_generator(seed + 1)
        self.augment_gen = seeded_generator(seed + 2)
        self.epoch = 0
        self.step = 0
        self.best = {"epoch": -1, "certified": -1.0, "robust": -1.0, "clean": -1.0, "sha256": ""}
        self.history: list[dict] = []
        self.peak_memory_mib: float | None = None

    def eval_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    def state(self, key: str) -> dict:
        return {
            "train_key": key, "epoch": self.epoch, "step": self.step, "best": dict(self.best),
            "history": json.dumps(self.history), "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "gens": [g.get_state() for g in (self.shuffle_gen, self.defense_gen, self.augment_gen)],
            "peak_memory_mib": self.peak_memory_mib,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        for g, s in zip((self.shuffle_gen, self.defense_gen, self.augment_gen), state["gens"]):
            g.set_state(s)
        self.epoch, self.step = state["epoch"], state["step"]
        self.best = {"certified": -1.0, **state["best"]}  # a run saved before certified selection
        self.history = json.loads(state["history"])
        self.peak_memory_mib = state.get("peak_memory_mib")  # absent in a run saved before costs were kept


def context(run: TrainingRun, track: Track, device: torch.device, num_classes: int) -> TrainContext:
    """What the defense is told about the current step of `run`."""
    eps = track.eps_at(run.epoch)
    errors = run.history[-1].get("val_class_robust_error") if run.history else None
    return TrainContext(epoch=run.epoch, step=run.step, device=device, eps=eps, attack_steps=track.attack_steps,
                        step_size=track.step_ratio * eps, num_classes=num_classes, generator=run.defense_gen,
                        norm=track.norm, val_class_error=tuple(errors) if errors else None)


def harness_loss(forward: nn.Module, defense: Defense, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext,
                 fast: FastPath, use_defense: bool = True) -> torch.Tensor:
    """The training loss of one batch as the harness computes it: the batch in the fast path's
    layout, under its autocast, the defense's loss (or clean cross-entropy during burn-in)."""
    x = fast.prepare_batch(x)
    with fast.autocast(ctx.device):
        if use_defense:
            return checked_loss(defense.loss(forward, x, y, ctx), defense, ctx)
        return nn.functional.cross_entropy(forward(x), y)


def checked_loss(loss: object, defense: Defense, ctx: TrainContext) -> torch.Tensor:
    """`loss` if it is what the harness can step on: a finite scalar tensor that depends on
    the parameters.

    Raises:
        AtbenchError: naming the defense, the epoch, the step and what is wrong.
    """
    where = f"defense {defense.name!r} at epoch {ctx.epoch + 1}, step {ctx.step}"
    fix = "return one scalar tensor computed from model(...) outputs, e.g. F.cross_entropy(model(x_adv), y)"
    if not isinstance(loss, torch.Tensor):
        raise AtbenchError(f"the loss of {where} is {type(loss).__name__}, not a tensor", fix)
    if loss.dim() != 0:
        raise AtbenchError(f"the loss of {where} has shape {tuple(loss.shape)}, not a scalar", fix + " (reduce it "
                           "with .mean())")
    if not loss.requires_grad:
        raise AtbenchError(f"the loss of {where} does not depend on the model's parameters (it is detached)",
                           fix + "; do not call .detach() or .item() on it")
    if not torch.isfinite(loss):
        raise AtbenchError(f"training loss of defense {defense.name!r} became {loss.item()} at epoch {ctx.epoch + 1}, "
                           f"step {ctx.step}",
                           "lower the learning rate or set grad clipping in the defense's recipe_overrides; "
                           "finished epochs are kept and a re-run resumes from the last checkpoint")
    return loss


def apply_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Back-propagate `loss`, clip the gradient norm (when `grad_clip`) and take one step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def train_epoch(run: TrainingRun, track: Track, defense: Defense, bundle: DataBundle,
                device: torch.device, total_steps: int, progress: bool) -> float:
    """One epoch of the run (the defense's loss after the burn-in, the clean loss before it);
    returns the mean loss."""
    run.model.train()
    use_defense = run.epoch >= track.burn_in_epochs
    losses = []
    batches = iterate_batches(bundle.train, track.batch_size, shuffle=True, generator=run.shuffle_gen)
    n_batches = math.ceil(len(bundle.train.y) / track.batch_size)
    bar = tqdm(batches, total=n_batches, desc=f"{defense.name} epoch {run.epoch + 1}/{track.epochs}",
               leave=False, disable=not progress, unit="batch")
    for x, y in bar:
        x = augment(x, track.augmentation, run.augment_gen).to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        for group in run.optimizer.param_groups:
            group["lr"] = track.lr * lr_factor(track, run.step / max(1, total_steps))
        ctx = context(run, track, device, bundle.num_classes)
        loss = harness_loss(run.forward, defense, x, y, ctx, run.fast, use_defense)
        apply_step(run.model, run.optimizer, loss, track.grad_clip)
        if run.ema is not None:
            update_ema(run.ema, run.model, track.ema_decay, run.step)
        run.step += 1
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", eps=f"{ctx.eps:.3g}")
    return sum(losses) / max(1, len(losses))


def bundle_on_device(bundle: DataBundle, device: torch.device) -> DataBundle:
    """The bundle with its training and validation splits moved to `device` (the test split,
    which training never reads, stays where it is)."""
    def move(split: Split) -> Split:
        return Split(split.x.to(device), split.y.to(device))

    return dataclasses.replace(bundle, train=move(bundle.train), val=move(bundle.val))


def best_checkpoint(run: TrainingRun, epoch: int) -> bytes:
    """The bytes of `best.pt` for the run's current (EMA, if any) weights at `epoch`."""
    return checkpoint_bytes({"model": run.eval_model().state_dict(), "epoch": epoch})


def restore_best(run: TrainingRun, best_path: Path, last_path: Path) -> None:
    """After a resume, make `best.pt` the checkpoint `last.pt` names. `last.pt` is written
    before `best.pt`, so a process killed between the two leaves an older or no `best.pt`
    while the best epoch is the last finished one, whose weights `last.pt` holds: it is
    rebuilt from them, byte for byte.

    Raises:
        AtbenchError: `best.pt` is missing or another file, and cannot be rebuilt.
    """
    want = run.best["sha256"]
    if not want or (best_path.is_file() and sha256_file(best_path) == want):
        return
    if run.best["epoch"] == run.epoch - 1:
        data = best_checkpoint(run, run.best["epoch"])
        if sha256_bytes(data) == want:
            atomic_write_bytes(best_path, data)
            return
    raise AtbenchError(f"{best_path} is missing or is not the best checkpoint {last_path} names (sha256 {want[:12]})",
                       f"restore it, or delete {best_path.parent} and re-run to train this run again")


def train(track: Track, defense: Defense, seed: int, run_dir: str | Path, device: str | torch.device = "cpu",
          data_dir: str | None = None, progress: bool = True, fast: FastPath | None = None) -> TrainResult:
    """Train `defense` on `track` with `seed`, writing into `run_dir`.

    Writes `last.pt` (full state, every epoch), `best.pt` (the weights with the best
    validation robust accuracy), and `train_log.jsonl` (per-epoch metrics), all atomically.
    If `last.pt` exists for the same inputs, training resumes after its epoch. `fast` is how
    the device is used (`benchmark.pipeline.fastpath`; default: `FastPath.for_device(device)`).
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    fast = fast or FastPath.for_device(device)
    check_supports(type(defense), track)
    key = train_key(track, defense, seed, fast)
    track = effective_track(track, defense)
    bundle = load_dataset(track.dataset, data_dir)
    if fast.data_on_device:
        bundle = bundle_on_device(bundle, device)
    run = TrainingRun(track, defense, bundle, seed, device, fast)
    remove_stale_temp_files(run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if last_path.is_file():
        state = load_verified_checkpoint(last_path)
        if state.get("train_key") == key:
            run.restore(state)
            restore_best(run, best_path, last_path)
            log.info("resuming %s from epoch %d", defense.name, run.epoch)
    total_steps = track.epochs * math.ceil(len(bundle.train.y) / track.batch_size)
    certifies = defense.meta.selection == "certified-l2"
    reset_peak_memory(device)
    start = time.perf_counter()
    spent = sum(h["seconds"] for h in run.history)
    while run.epoch < track.epochs:
        t0 = time.perf_counter()
        defense.on_epoch_start(run.model, context(run, track, device, bundle.num_classes))
        mean_loss = train_epoch(run, track, defense, bundle, device, total_steps, progress)
        scores = validate(run.eval_model(), bundle.val, track, device, seed, bundle.num_classes)
        clean, robust = scores.clean, scores.robust
        certified = certified_selection_score(run.eval_model(), bundle.val, track, device) if certifies else -1.0
        best = None
        if (certified, robust, clean) > (run.best["certified"], run.best["robust"], run.best["clean"]):
            best = best_checkpoint(run, run.epoch)
            run.best = {"epoch": run.epoch, "certified": certified, "robust": robust, "clean": clean,
                        "sha256": sha256_bytes(best)}
        run.history.append({"epoch": run.epoch + 1, "loss": mean_loss, "train_eps": track.eps_at(run.epoch),
                            "val_clean_acc": clean, "val_robust_acc": robust, "val_ce_robust_acc": scores.ce_robust,
                            "val_class_robust_error": list(scores.class_error),
                            **({"val_certified_acc": certified} if certifies else {}),
                            "lr": run.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        log.info("%s epoch %d/%d loss %.4f val clean %.3f robust %.3f", defense.name, run.epoch + 1,
                 track.epochs, mean_loss, clean, robust)
        run.epoch += 1
        run.peak_memory_mib = max_known(run.peak_memory_mib, peak_memory_mib(device))
        save_verified_checkpoint(last_path, run.state(key))  # first: it names the best checkpoint
        if best is not None:
            atomic_write_bytes(best_path, best)
        lines = "".join(json.dumps(h, sort_keys=True) + "\n" for h in run.history)
        atomic_write_text(run_dir / "train_log.jsonl", lines)
    return TrainResult(
        checkpoint=str(best_path), checkpoint_sha256=run.best["sha256"], best_epoch=run.best["epoch"] + 1,
        best_val_robust_acc=run.best["robust"], best_val_clean_acc=run.best["clean"], epochs=track.epochs,
        runtime_s=spent + (time.perf_counter() - start), train_key=key, fast_path=fast.settings(),
        best_val_certified_acc=run.best["certified"] if certifies else None, peak_memory_mib=run.peak_memory_mib,
    )
