"""LipLT pairwise L2 Lipschitz bounds and certified L2 radii for plain networks (Fazlyab et al.,
"Certified Robustness via Dynamic Margin Maximization and Improved Lipschitz Regularization",
NeurIPS 2023).

A plain network x -> z is an `nn.Sequential` of an optional `Normalize`, then Conv2d / Linear /
ReLU / Flatten layers (`benchmark.models.architectures.plain_cnn`). Biases do not change Lipschitz constants,
so the network is read as linear maps W_1, ..., W_L with a ReLU between consecutive ones:
x_1 = W_1 x, x_{k+1} = W_{k+1} relu(x_k), z = x_L. `Normalize` (x - mean) / std is folded into
W_1 as a per-channel scale 1/std; Flatten is a reshape. Writing relu(u) = u/2 + psi(u)/2 with
psi = |.| 1-Lipschitz and unrolling gives the LipLT recursion for bounds m_k on the Lipschitz
constant of x -> x_k (1-based, || || the spectral norm):

    m_1     = ||W_1||
    m_{k+1} = (1/2)^k ||W_{k+1} ... W_1|| + sum_{j=1..k} (1/2)^(k-j+1) ||W_{k+1} ... W_{j+1}|| m_j

and, for c = e_k - e_j, the same step with the row vector c^T W_L as the last layer:

    L_kj = (1/2)^(L-1) ||c^T W_L ... W_1|| + sum_{i=1..L-1} (1/2)^(L-i) ||c^T W_L ... W_{i+1}|| m_i

The vector norms are exact (rows are computed with adjoints). For training (CRM-LipLT) the
spectral norms of the products come from warm-started power iteration, which approaches them from
below. For certification (`pairwise_lipschitz`) a bound from below would inflate the radii, so
each product is formed as an explicit matrix in float64 (the identity pushed through it, on its
smaller side) and its norm is the square root of the largest eigenvalue of its Gram matrix; the
bound is rounded up to the model's dtype. Networks with a product whose smaller side exceeds
`EXACT_LIMIT`, or whose explicit form would exceed `EXACT_ENTRIES` (wide convolutional layers of
CIFAR-size networks), fall back to converged power iteration, and
`lipschitz_method` says which was used.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.models.architectures import Normalize

#: The largest smaller side of a product W_b ... W_a whose spectral norm is computed exactly (a
#: Gram matrix of this size in float64 is 0.5 GB).
EXACT_LIMIT = 8192
#: The most float64 entries (1 GiB) the identity pushed through a product may occupy at its
#: widest layer; a larger product falls back to power iteration before any product is formed.
EXACT_ENTRIES = 2 ** 27
EXACT, POWER_ITERATION = "exact (float64 Gram matrices)", "power iteration to convergence (an estimate from below)"

PLAIN_FIX = ("Lipschitz bounds support only plain networks: an nn.Sequential of an optional Normalize, "
             "then Conv2d, Linear, ReLU and Flatten layers, ending with a Linear (no skip connections, "
             "no BatchNorm, no pooling); use a plain model such as cnn-mnist, cnn-cifar or cnn-tiny")


class _Scale:
    """The linear part of `Normalize`: multiply channel c by 1 / std_c (self-adjoint)."""

    def __init__(self, module: Normalize, shape: tuple[int, ...]):
        if len(shape) != 3 or module.std.numel() != shape[0]:
            raise AtbenchError(f"Normalize with {module.std.numel()} channels gets inputs of shape {shape}",
                               "pass input_shape = (C, H, W) with C matching the model's Normalize")
        self.module, self.in_shape, self.out_shape = module, shape, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.view(-1, *self.in_shape) / self.module.std).flatten(1)

    adjoint = forward


class _Conv:
    """A bias-free Conv2d (stride, padding, dilation, groups) and its adjoint, conv_transpose2d."""

    def __init__(self, module: nn.Conv2d, shape: tuple[int, ...]):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise AtbenchError(f"Conv2d with padding {module.padding!r} and padding_mode {module.padding_mode!r}",
                               "use zero padding given as integers (padding_mode='zeros')")
        if len(shape) != 3 or shape[0] != module.in_channels:
            raise AtbenchError(f"Conv2d with {module.in_channels} input channels gets inputs of shape {shape}",
                               "pass the model's input_shape = (C, H, W)")
        self.module, self.in_shape = module, shape
        with torch.no_grad():
            self.out_shape = tuple(self._conv(torch.zeros(1, *shape, dtype=module.weight.dtype,
                                                          device=module.weight.device)).shape[1:])
        m = module
        self.output_padding = tuple(
            size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)
            for size, out, s, p, d, k in zip(shape[1:], self.out_shape[1:], m.stride, m.padding, m.dilation,
                                             m.kernel_size))

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        return F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation, m.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x.view(-1, *self.in_shape)).flatten(1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        m = self.module
        out = F.conv_transpose2d(y.view(-1, *self.out_shape), m.weight, None, m.stride, m.padding,
                                 self.output_padding, m.groups, m.dilation)
        return out.flatten(1)


class _Dense:
    """A bias-free Linear layer; its input is flattened (so a Flatten before it is implicit)."""

    def __init__(self, module: nn.Linear, shape: tuple[int, ...]):
        if math.prod(shape) != module.in_features:
            raise AtbenchError(f"Linear with {module.in_features} inputs gets features of shape {shape}",
                               "pass the model's input_shape = (C, H, W)")
        self.module, self.in_shape, self.out_shape = module, shape, (module.out_features,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.module.weight.T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.module.weight


class LinearMap:
    """The linear part of the affine layers between two ReLUs, as an operator on flattened
    vectors: `W(x)` maps (B, in_features) to (B, out_features), `W.adjoint(y)` applies W^T.
    It reads the modules' current weights at every call, so results are differentiable in them.

    Attributes:
        in_shape, out_shape: the unflattened shapes of one input and one output.
        in_features, out_features: their sizes.
    """

    def __init__(self, ops: Sequence):
        self.ops = list(ops)
        self.in_shape, self.out_shape = self.ops[0].in_shape, self.ops[-1].out_shape
        self.in_features, self.out_features = math.prod(self.in_shape), math.prod(self.out_shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op.forward(x)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """W^T y for a batch y of shape (B, out_features); returns (B, in_features)."""
        for op in reversed(self.ops):
            y = op.adjoint(y)
        return y


def linear_layers(model: nn.Module, input_shape: Sequence[int]) -> list[LinearMap]:
    """The linear maps W_1, ..., W_L of a plain network for inputs of shape `input_shape` (C, H, W):
    one per run of affine layers between ReLUs, biases dropped, the first `Normalize`'s 1/std
    folded into W_1 and Flatten layers read as reshapes. Repeated ReLUs count as one.

    Raises:
        AtbenchError: naming the offending module when `model` is not a plain network (a ResNet,
            BatchNorm, pooling, a trailing ReLU, ...).
    """
    if not isinstance(model, nn.Sequential):
        raise AtbenchError(f"the model is a {type(model).__name__}, not an nn.Sequential of plain layers",
                           PLAIN_FIX)
    shape = tuple(int(d) for d in input_shape)
    maps: list[LinearMap] = []
    ops: list = []
    for index, module in enumerate(model):
        kind = type(module)
        if kind is Normalize and index == 0:
            ops.append(_Scale(module, shape))
        elif kind is nn.Conv2d or kind is nn.Linear:
            ops.append((_Conv if kind is nn.Conv2d else _Dense)(module, shape))
            shape = ops[-1].out_shape
        elif kind is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
            shape = (math.prod(shape),)
        elif kind is nn.ReLU and ops:
            maps.append(LinearMap(ops))
            ops = []
        elif not (kind is nn.ReLU and maps and type(model[index - 1]) is nn.ReLU):
            raise AtbenchError(f"layer {index} of the model, a {kind.__name__}, is not supported here", PLAIN_FIX)
    if not ops:
        raise AtbenchError("the model ends with a ReLU or has no Conv2d/Linear layer", PLAIN_FIX)
    return maps + [LinearMap(ops)]


def _unit_rows(v: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Rows of `v` scaled to unit norm; rows of norm 0 are replaced by those of `fallback`."""
    norms = v.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, v / norms.clamp_min(torch.finfo(v.dtype).tiny), fallback)


class LipschitzBound:
    """LipLT pairwise Lipschitz bounds of a plain network with persistent power-iteration vectors.

    For every product W_b ... W_a (1 <= a <= b <= L-1) it keeps a unit vector; the vectors of
    products that start at the same layer are iterated together as one batch. `update` runs
    warm-started power iterations without autograd (so the vectors are always detached);
    `product_norms` and `pairwise` then evaluate ||W_b ... W_a v|| with the current weights and are
    differentiable in them. Training (CRM-LipLT): call `update(5)` then `pairwise()` at each step.
    Certification: `bound()`, which iterates to convergence.

    Args:
        model: a plain network (see `linear_layers`).
        input_shape: (C, H, W) of one input.
        seed: seed of the random initial vectors.

    Example:
        >>> lip = LipschitzBound(model, (1, 28, 28))
        >>> lip.update(5)
        >>> L = lip.pairwise()          # (K, K), differentiable in model's weights
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], *, seed: int = 0):
        self.maps = linear_layers(model, input_shape)
        self._like = next(model.parameters())  # gives the device and dtype of vectors
        generator = torch.Generator().manual_seed(seed)
        self.vectors = [
            F.normalize(torch.randn(len(self.maps) - 1 - a, self.maps[a].in_features, generator=generator), dim=1)
            .to(self._like) for a in range(len(self.maps) - 1)
        ]

    def _products(self, a: int, v: torch.Tensor) -> list[torch.Tensor]:
        """Row r of `v` times W_{a+r} ... W_a (0-based layers), one (1, out) tensor per row."""
        outs, h = [], v
        for b in range(a, len(self.maps) - 1):
            h = self.maps[b](h)
            outs.append(h[:1])
            h = h[1:]
        return outs

    def _adjoint_products(self, a: int, outs: list[torch.Tensor]) -> torch.Tensor:
        """(W_{a+r} ... W_a)^T applied to outs[r], stacked as rows r = 0, 1, ..."""
        g = None
        for b in range(len(self.maps) - 2, a - 1, -1):
            g = outs[b - a] if g is None else torch.cat([outs[b - a], g])
            g = self.maps[b].adjoint(g)
        return g

    def update(self, iterations: int = 5) -> None:
        """Run `iterations` power iterations v <- P^T P v / ||P^T P v|| for every product P,
        starting from the stored vectors (warm start); no autograd graph is kept."""
        with torch.no_grad():
            for a, v in enumerate(self.vectors):
                v = v.to(self._like)
                for _ in range(iterations):
                    v = _unit_rows(self._adjoint_products(a, self._products(a, v)), v)
                self.vectors[a] = v

    def product_norms(self) -> torch.Tensor:
        """(L-1, L-1) tensor N with N[b, a] = ||W_b ... W_a v|| for a <= b (0-based layers; 0 above
        the diagonal): the power-iteration estimates of the spectral norms, lower bounds that are
        exact at convergence, differentiable in the weights (the vectors are constants)."""
        n = len(self.maps) - 1
        columns = []
        for a, v in enumerate(self.vectors):
            norms = [out.norm() for out in self._products(a, v.to(self._like))]
            columns.append(torch.stack([self._like.new_zeros(())] * a + norms))
        return torch.stack(columns, dim=1) if n else self._like.new_zeros(0, 0)

    def exact_product_norms(self) -> torch.Tensor:
        """(L-1, L-1) tensor N with N[b, a] = ||W_b ... W_a|| computed exactly, or None when a
        product is too large to form (`_exact_fits`): each product is applied to the identity of
        its smaller side (its adjoint when the output side is smaller), and its norm is the square
        root of the largest eigenvalue of the Gram matrix of the result. Exact up to the rounding
        of the model's dtype: build the bound on a float64 copy (`pairwise_lipschitz` does)."""
        n = len(self.maps) - 1
        if not self._exact_fits():
            return None
        norms = self._like.new_zeros(n, n)
        with torch.no_grad():
            for a, b, chain, side in self._products_to_form():
                rows = torch.eye(side, dtype=self._like.dtype, device=self._like.device)
                if chain[0].in_features <= chain[-1].out_features:
                    for linear in chain:
                        rows = linear(rows)  # P^T, (in, out)
                else:
                    for linear in reversed(chain):
                        rows = linear.adjoint(rows)  # P, (out, in)
                norms[b, a] = torch.linalg.eigvalsh(rows @ rows.T)[-1].clamp_min(0).sqrt()
        return norms

    def _exact_fits(self) -> bool:
        """Whether every product W_b ... W_a (a <= b < L-1) is small enough to form exactly:
        its smaller side is at most `EXACT_LIMIT` and the identity of that side, pushed through
        the product, never holds more than `EXACT_ENTRIES` entries. Checked before any product
        is formed, so a network too large for the exact norms costs nothing extra."""
        for _, _, chain, side in self._products_to_form():
            widest = max(max(m.in_features, m.out_features) for m in chain)
            if side > EXACT_LIMIT or side * widest > EXACT_ENTRIES:
                return False
        return True

    def _products_to_form(self):
        """(a, b, the maps W_a ... W_b, the product's smaller side) for every a <= b < L-1."""
        n = len(self.maps) - 1
        for a in range(n):
            for b in range(a, n):
                chain = self.maps[a:b + 1]
                yield a, b, chain, min(chain[0].in_features, chain[-1].out_features)

    def pairwise(self, norms: torch.Tensor | None = None) -> torch.Tensor:
        """(K, K) LipLT bounds L[k, j] of the L2 Lipschitz constant of x -> z_k - z_j (symmetric,
        zero diagonal) from the product norms `norms` (`exact_product_norms`), or, when None, from
        the current power-iteration vectors (differentiable in the weights)."""
        # 0-based layers: N[b, a] = ||W_{b+1} ... W_{a+1}|| and m[k] = m_{k+1} of the module docstring
        N = self.product_norms() if norms is None else norms
        m: list[torch.Tensor] = []
        for k in range(len(self.maps) - 1):
            m.append(0.5 ** k * N[k, 0] + sum(0.5 ** (k - j) * N[k, j + 1] * m[j] for j in range(k)))
        last = len(self.maps) - 1
        rows = torch.eye(self.maps[-1].out_features, dtype=self._like.dtype, device=self._like.device)
        bound = 0
        for j in range(last - 1, -2, -1):
            rows = self.maps[j + 1].adjoint(rows)  # row k: e_k^T W_last ... W_{j+1}
            distances = torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist")
            bound = bound + (0.5 ** (last - j) * distances * m[j] if j >= 0 else 0.5 ** last * distances)
        return bound * (1 - torch.eye(len(rows), dtype=rows.dtype, device=rows.device))

    def global_pairwise(self, norms: torch.Tensor | None = None) -> torch.Tensor:
        """(K, K) global product bounds G[k, j] = ||w_k - w_j|| * prod_{l < L} ||W_l|| of the L2
        Lipschitz constant of x -> z_k - z_j (symmetric, zero diagonal): the distance between rows
        k and j of the last linear map W_L, times the spectral norms of the earlier maps, each
        bounded on its own. This is the bound of GloRo (Leino et al., "Globally-Robust Neural
        Networks", ICML 2021; `defenses/gloro.py`); from exact norms it is never below `pairwise`
        (LipLT tightens it). The single-layer norms are the diagonal of `norms`
        (`exact_product_norms`) or, when None, ||W_l v|| for the current power-iteration vector
        of each single layer (the diagonal of `product_norms`, without the longer products),
        differentiable in the weights."""
        if norms is None:
            layer_norms = [self.maps[a](v[:1].to(self._like)).norm() for a, v in enumerate(self.vectors)]
        else:
            layer_norms = list(norms.diagonal())
        rows = self.maps[-1].adjoint(torch.eye(self.maps[-1].out_features, dtype=self._like.dtype,
                                               device=self._like.device))
        distances = torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist")
        product = torch.stack(layer_norms).prod() if layer_norms else 1.0
        return distances * product * (1 - torch.eye(len(rows), dtype=rows.dtype, device=rows.device))

    def bound(self, *, tol: float = 1e-6, max_iterations: int = 500, check_every: int = 5) -> torch.Tensor:
        """Detached (K, K) pairwise bounds after power iteration has converged: iterate until no
        product norm grows by more than `tol` (relative) over `check_every` iterations, or until
        `max_iterations`. Power iteration approaches each spectral norm from below, so this is an
        estimate from below of the exact bound (`exact_product_norms`), used only where a
        product is too large to form."""
        with torch.no_grad():
            done, before = 0, self.product_norms()
            while done < max_iterations:
                step = min(check_every, max_iterations - done)
                self.update(step)
                done += step
                after = self.product_norms()
                if ((after - before).abs() <= tol * after).all():
                    break
                before = after
            return self.pairwise()


def certified_lipschitz(model: nn.Module, input_shape: Sequence[int]) -> tuple[torch.Tensor, str]:
    """(K, K) LipLT bound of the L2 Lipschitz constant of x -> z_k - z_j for a plain network on
    inputs of shape `input_shape` (C, H, W), for certification: symmetric, zero diagonal,
    detached, in the model's dtype and device, computed in float64 from exact product norms and
    rounded up; and the method (`EXACT`, or `POWER_ITERATION` for products too large to form)."""
    like = next(model.parameters())
    wide = LipschitzBound(copy.deepcopy(model).to(torch.float64), input_shape)
    norms = wide.exact_product_norms()
    method = EXACT if norms is not None else POWER_ITERATION
    with torch.no_grad():
        exact = wide.pairwise(norms) if norms is not None else wide.bound()
        rounded = exact.to(like.dtype)
        rounded = torch.where(rounded.double() < exact, torch.nextafter(rounded, rounded.new_tensor(math.inf)),
                              rounded)
    return rounded.to(like.device), method


def pairwise_lipschitz(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """The bound of `certified_lipschitz`, without its method."""
    return certified_lipschitz(model, input_shape)[0]


def _radius(model: nn.Module, x: torch.Tensor, input_shape: Sequence[int] | None,
            L: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Certified L2 radii and predictions of `model` on `x`."""
    if L is None:
        L = pairwise_lipschitz(model, tuple(x.shape[1:]) if input_shape is None else input_shape)
    with torch.no_grad():
        z = model(x)
    pred = z.argmax(dim=1)
    margin = z.gather(1, pred[:, None]) - z
    lip = L.detach().to(z)[pred]
    radius = torch.where(lip > 0, margin / lip.clamp_min(torch.finfo(z.dtype).tiny),
                         torch.where(margin > 0, math.inf, 0.0))
    return radius.scatter(1, pred[:, None], math.inf).min(dim=1).values, pred


def certified_radius(model: nn.Module, x: torch.Tensor, input_shape: Sequence[int] | None = None,
                     L: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) certified L2 radii R_i = min_{j != yhat_i} (z_yhat - z_j) / L[yhat_i, j]: no input
    within L2 distance R_i of x_i changes the prediction yhat_i = argmax z(x_i).

    Args:
        model: a plain network.
        x: inputs (B, C, H, W).
        input_shape: (C, H, W); default x.shape[1:].
        L: precomputed `pairwise_lipschitz(model, input_shape)`; computed when None.
    """
    return _radius(model, x, input_shape, L)[0]
