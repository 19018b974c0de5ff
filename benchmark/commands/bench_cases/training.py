"""Bench case of training: the harness's PGD-AT step against a plain fp32 reference loop, with
images/s, peak memory and the compute floor (FLOPs per trained image against the device's
measured peak rate)."""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attacks.pgd import pgd_train_examples
from benchmark.commands.bench import BENCH_CASES, Comparison, Workload, time_pair
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.train import apply_step, harness_loss, seeded_generator
from defenses.base import TrainContext
from defenses.pgd_at import PGDAT

#: Images per CIFAR-10 training epoch (for seconds per epoch).
CIFAR10_TRAIN_IMAGES = 50_000
#: Timed optimiser steps per side and repeat (after one untimed warm-up step each).
TIMED_STEPS = 3


def plain_pgd_at_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                      eps: float, step_size: float, steps: int) -> torch.Tensor:
    """The plain reference: PGD-AT as commonly written, fp32, default layout, `loss.backward()`
    in the attack (which also computes every weight gradient), then one optimiser step. Returns
    the adversarial examples."""
    model.eval()
    delta = ((x + (2 * torch.rand_like(x) - 1) * eps).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        F.cross_entropy(model(x + delta), y).backward()
        delta.data = (delta + step_size * delta.grad.sign()).clamp(-eps, eps)
        delta.data = (x + delta.data).clamp(0, 1) - x
        delta.grad.zero_()
    model.train()
    x_adv = (x + delta).detach()
    optimizer.zero_grad()
    F.cross_entropy(model(x_adv), y).backward()
    optimizer.step()
    return x_adv


def _setting(work: Workload) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float, int, float, int, str]:
    """Model, one batch, eps, steps, step size, classes and a description: CIFAR-10-shaped random data
    for `work.train_model`, else the track's model on a batch of its training data."""
    torch.manual_seed(0)
    track = work.track
    batch = track.batch_size if track is not None else 128
    if work.train_model is not None:
        model = build_model(work.train_model, 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
        gen = seeded_generator(0)
        x, y = torch.rand(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
        return model, x, y, 8 / 255, 10, 2 / 255, 10, f"{work.train_model}, 3x32x32, batch {batch}, PGD-10 eps 8/255"
    bundle = load_dataset(track.dataset, work.data_dir)
    model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    x, y = bundle.train.x[:batch], bundle.train.y[:batch]
    return (model, x, y, track.eps, track.attack_steps, track.step_ratio * track.eps, bundle.num_classes,
            f"{track.model}, {track.dataset}, batch {batch}, PGD-{track.attack_steps} eps {track.eps}")


def _best_seconds(fn: Callable[[], Any], device: torch.device, calls: int = 10) -> float:
    best = float("inf")
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def measured_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The device's best measured dense rate in TFLOP/s: the faster of a square matmul and a
    3x3, 128-channel convolution (the best of 3 runs each). The compute floor is measured
    against it, a practical ceiling rather than the vendor's peak."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    matmul = 2 * n**3 / _best_seconds(lambda: a @ b, device)
    batch = 256 if device.type == "cuda" else 16
    x = torch.rand(batch, 128, 32, 32, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device, dtype, memory_format=torch.channels_last)
    with torch.no_grad():
        conv_rate = 2 * batch * 32 * 32 * 128 * 128 * 9 / _best_seconds(lambda: conv(x), device)
    return max(matmul, conv_rate) / 1e12


def step_flops_per_image(forward_flops: float, steps: int) -> tuple[float, float]:
    """FLOPs per trained image of a PGD-`steps` AT step, ours and the plain loop's, from the
    forward's: a backward to the input costs one forward, one that also computes the weight
    gradients two. Ours: `steps` x (forward + input backward) + forward + full backward =
    (2 steps + 3) forwards; the plain loop's attack also computes weight gradients:
    (3 steps + 3) forwards."""
    return (2 * steps + 3) * forward_flops, (3 * steps + 3) * forward_flops


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@BENCH_CASES.register(name="at-step")
def at_step_vs_plain_loop(work: Workload) -> Comparison:
    """The harness's PGD-AT training step (its fast path for the device: data on the device,
    channels_last, bf16 autocast, input-only gradients in the attack; `torch.compile` with
    `work.compile`) against `plain_pgd_at_step`, from copies of the same model on the same batch.

    Not weaker means ours' adversarial examples raise the (fp32) loss of the initial model at
    least 95% as much as the plain loop's. The details give images/s of each side, the
    FLOPs per forward (counted by torch's FlopCounterMode) and per trained image
    (`step_flops_per_image`), and the compute floor: ours' FLOPs at the device's measured peak
    rate (`measured_peak_tflops`)."""
    device = torch.device(work.device)
    model, x, y, eps, steps, step_size, num_classes, described = _setting(work)
    model, x, y = model.to(device), x.to(device), y.to(device)
    fast = FastPath.for_device(device, compile=work.compile)
    ours_model = fast.prepare_model(copy.deepcopy(model))
    forward = fast.forward_model(ours_model)
    ours_opt = torch.optim.SGD(ours_model.parameters(), lr=0.01, momentum=0.9)
    plain_model = copy.deepcopy(model)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9)
    ctx = TrainContext(epoch=0, step=0, device=device, eps=eps, attack_steps=steps, step_size=step_size,
                       num_classes=num_classes, generator=seeded_generator(0))
    defense = PGDAT()

    with torch.no_grad():
        clean_loss = F.cross_entropy(model.eval()(x), y).item()
    with fast.autocast(device):
        ours_adv = pgd_train_examples(forward, fast.prepare_batch(x), y, eps, steps, step_size, seeded_generator(1))
    plain_adv = plain_pgd_at_step(copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=0.0), x, y, eps,
                                  step_size, steps)
    with torch.no_grad():
        model.eval()
        ours_gain = F.cross_entropy(model(ours_adv.float()), y).item() - clean_loss
        plain_gain = F.cross_entropy(model(plain_adv), y).item() - clean_loss

    def ours_steps():
        for _ in range(TIMED_STEPS):
            apply_step(ours_model, ours_opt, harness_loss(forward, defense, x, y, ctx, fast), 0.0)

    def plain_steps():
        for _ in range(TIMED_STEPS):
            plain_pgd_at_step(plain_model, plain_opt, x, y, eps, step_size, steps)

    apply_step(ours_model, ours_opt, harness_loss(forward, defense, x, y, ctx, fast), 0.0)  # warm-up (and compile)
    plain_pgd_at_step(plain_model, plain_opt, x, y, eps, step_size, steps)
    ours, ref = time_pair(ours_steps, plain_steps, work.device, work.repeats)

    forward_flops = _flops(lambda: model.eval()(x[:1]))
    step_flops, plain_flops = step_flops_per_image(forward_flops, steps)
    dtype = torch.bfloat16 if fast.bf16 else torch.float32
    peak = measured_peak_tflops(device, dtype)
    images = TIMED_STEPS * len(y)
    floor_ips = peak * 1e12 / step_flops
    details = {
        "setting": described, "fast_path": dataclasses.asdict(fast),
        "adversarial_loss_gain": {"ours": ours_gain, "plain": plain_gain},
        "gflop_per_forward_image": forward_flops / 1e9, "gflop_per_trained_image": step_flops / 1e9,
        "plain_gflop_per_trained_image": plain_flops / 1e9,
        "peak_tflops": peak, "peak_dtype": str(dtype).replace("torch.", ""),
        "floor_images_per_s": floor_ips,
        "seconds_per_cifar10_epoch": {"ours": CIFAR10_TRAIN_IMAGES * ours.seconds / images,
                                      "plain": CIFAR10_TRAIN_IMAGES * ref.seconds / images,
                                      "floor": CIFAR10_TRAIN_IMAGES / floor_ips},
    }
    epoch = details["seconds_per_cifar10_epoch"]
    details["table"] = {
        "header": ["setting", "GFLOP/forward img", "GFLOP/trained img ours / plain", "ours img/s", "plain img/s",
                   f"floor img/s ({details['peak_dtype']} peak {peak:.2f} TFLOP/s)",
                   "s/CIFAR-10 epoch ours / plain / floor"],
        "rows": [[described, f"{forward_flops / 1e9:.3f}", f"{step_flops / 1e9:.2f} / {plain_flops / 1e9:.2f}",
                  f"{images / ours.seconds:.1f}",
                  f"{images / ref.seconds:.1f}", f"{floor_ips:.1f}",
                  f"{epoch['ours']:.0f} / {epoch['plain']:.0f} / {epoch['floor']:.0f}"]],
    }
    return Comparison("at-step", "harness PGD-AT step", "plain fp32 loop", ours.seconds, ref.seconds,
                      ours_gain >= 0.95 * plain_gain, details, images, ours.peak_mb, ref.peak_mb)
