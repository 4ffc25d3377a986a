"""Differentiable NumPy models over a flat parameter vector, and the objective L(theta) they make
with any fastloss loss.

A model maps one flat vector ``theta`` to predictions and back-propagates a cotangent onto it:

- ``param_specs``: the layout of ``theta`` (name, shape, kind "weight"/"bias"); weights are stored
  ``(fan_out, fan_in)`` as in PyTorch, so a *filter* (Li et al. 2018) is one row;
- ``predict(theta, X)``: predictions, the ``y_pred`` the loss sees;
- ``vjp(theta, X, cotangent)``: ``J(theta)^T cotangent``, a flat vector like ``theta``;
- ``linear``: predictions are affine in ``theta``; such models also give ``jvp(theta, X, v) = J v``.

``Objective(model, X, y, loss)`` is ``L(theta) = loss(y, model.predict(theta, X)) + l2/2 ||theta||^2``
(the penalty covers every parameter, biases included) with its gradient and Hessian-vector
products (``hvp`` also takes a block ``(n_params, b)`` of vectors). For a linear model with an elementwise loss (the loss's Hessian with respect to the
predictions is diagonal) the HVP is exact: ``J^T diag(h) J v + l2 v`` with ``h`` the loss's Hessian
diagonal from ``loss.grad_hess`` (cached per theta, so each HVP costs one ``J v`` and one ``J^T u``).
Otherwise (the MLP, the softmax cross-entropy whose Hessian over a row is ``diag(p) - p p^T``, not
diagonal) the HVP is the central difference of gradients
``(grad(theta + e v) - grad(theta - e v)) / (2 e)`` with ``e = eps^(1/3) max(1, ||theta||) / ||v||``,
``eps`` the float64 machine epsilon (the differences always run in float64): that step balances
the O(e^2) truncation error against the O(eps / e) rounding error of the gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._base import ElementwiseLoss, Loss
from . import init as _init

__all__ = ["ParamSpec", "Model", "LinearModel", "LinearRegression", "LogisticRegression",
           "SoftmaxRegression", "MLP", "Objective"]


@dataclass(frozen=True)
class ParamSpec:
    """One named block of the flat parameter vector."""

    name: str
    shape: Tuple[int, ...]
    kind: str  # "weight" (rows are filters) or "bias"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Model:
    """Base of the models: the flat layout of ``theta`` and its views."""

    param_specs: Tuple[ParamSpec, ...] = ()
    linear = False

    @property
    def n_params(self) -> int:
        return sum(s.size for s in self.param_specs)

    def unflatten(self, theta: np.ndarray) -> Dict[str, np.ndarray]:
        """Views of ``theta``, one per block, in the blocks' shapes (no copy)."""
        theta = self._check_theta(theta)
        views, start = {}, 0
        for s in self.param_specs:
            views[s.name] = theta[start:start + s.size].reshape(s.shape)
            start += s.size
        return views

    def flatten(self, blocks: Dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(blocks[s.name]).ravel() for s in self.param_specs])

    def _check_theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},); got {theta.shape}")
        return theta

    def init_params(self, seed: Any = None, dtype=np.float64) -> np.ndarray:
        """Xavier/Glorot-uniform weights (``init.xavier_uniform``), zero biases; seeded."""
        rng = np.random.default_rng(seed)
        return self.flatten({s.name: (_init.xavier_uniform(s.shape, seed=rng, dtype=dtype)
                                      if s.kind == "weight" else np.zeros(s.shape, dtype))
                             for s in self.param_specs})

    def predict(self, theta, X) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, theta, X, cotangent) -> np.ndarray:
        raise NotImplementedError

    def jvp(self, theta, X, v) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} is not linear in theta: no exact jvp")

    def default_loss(self) -> Loss:
        raise NotImplementedError(f"{type(self).__name__} has no default loss; pass loss=")


def _check_X(X, n_features: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}); got {X.shape}")
    return X


class LinearModel(Model):
    """``predict = X W^T + b`` with ``W`` (n_outputs, n_features); one output is returned as (n,)."""

    linear = True

    def __init__(self, n_features: int, n_outputs: int = 1, fit_intercept: bool = True) -> None:
        if n_features < 1 or n_outputs < 1:
            raise ValueError(f"n_features and n_outputs must be >= 1; got {n_features}, {n_outputs}")
        self.n_features, self.n_outputs, self.fit_intercept = int(n_features), int(n_outputs), fit_intercept
        specs = [ParamSpec("weight", (self.n_outputs, self.n_features), "weight")]
        if fit_intercept:
            specs.append(ParamSpec("bias", (self.n_outputs,), "bias"))
        self.param_specs = tuple(specs)

    def jvp(self, theta, X, v) -> np.ndarray:
        """Predictions are affine: ``J v = X V^T + v_b`` (also ``predict`` with ``theta = v``).
        ``v`` may be a block of vectors, (n_params, b): the result gains a trailing axis b."""
        X = _check_X(X, self.n_features)
        v = np.asarray(v)
        K, d = self.n_outputs, self.n_features
        if v.shape[:1] != (self.n_params,) or v.ndim > 2:
            raise ValueError(f"v must have shape ({self.n_params},) or ({self.n_params}, b); got {v.shape}")
        z = np.tensordot(X, v[:K * d].reshape((K, d) + v.shape[1:]), axes=([1], [1]))  # (n, K[, b])
        if self.fit_intercept:
            z += v[K * d:]
        return z[:, 0] if K == 1 else z

    def predict(self, theta, X) -> np.ndarray:
        return self.jvp(theta, X, theta)

    def vjp(self, theta, X, cotangent) -> np.ndarray:
        """``J^T g`` for ``g`` shaped like the predictions, or with a trailing block axis b."""
        X = _check_X(X, self.n_features)
        g = np.asarray(cotangent)
        if self.n_outputs == 1:
            g = g[:, None]
        n, K, d, batch = g.shape[0], self.n_outputs, self.n_features, g.shape[2:]
        # X^T G, not G^T X: BLAS reads X once either way, but the G^T X form of a thin block
        # falls on a slow OpenBLAS path (~40x slower for 2 to 4 columns).
        gw = np.moveaxis((X.T @ g.reshape(n, -1)).reshape((d, K) + batch), 0, 1)  # (K, d[, b])
        parts = [gw.reshape((K * d,) + batch)]
        if self.fit_intercept:
            parts.append(g.sum(axis=0))
        return np.concatenate(parts, axis=0)


class LinearRegression(LinearModel):
    """Linear regression, ``y_pred = X w + b``; default loss MSE."""

    def __init__(self, n_features: int, fit_intercept: bool = True) -> None:
        super().__init__(n_features, 1, fit_intercept)

    def default_loss(self) -> Loss:
        from ..regression import MSE
        return MSE()


class LogisticRegression(LinearModel):
    """Logistic regression: logits ``X w + b``; default loss ``Logistic`` (labels -1/+1 or 0/1)."""

    def __init__(self, n_features: int, fit_intercept: bool = True) -> None:
        super().__init__(n_features, 1, fit_intercept)

    def default_loss(self) -> Loss:
        from ..classification import Logistic
        return Logistic()


class SoftmaxRegression(LinearModel):
    """Multinomial logistic regression: logits ``X W^T + b`` (n, K); default loss
    ``SparseCategoricalCrossEntropy(from_logits=True)``."""

    def __init__(self, n_features: int, n_classes: int, fit_intercept: bool = True) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2; got {n_classes}")
        super().__init__(n_features, n_classes, fit_intercept)

    def default_loss(self) -> Loss:
        from ..multiclass import SparseCategoricalCrossEntropy
        return SparseCategoricalCrossEntropy(from_logits=True)


_ACTIVATIONS = {
    # name: (f(z), f'(z) from z and f(z))
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "sigmoid": (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)), lambda z, a: a * (1.0 - a)),
    "linear": (lambda z: z, lambda z, a: np.ones_like(z)),
}


class MLP(Model):
    """A small fully connected network: ``layer_sizes = [n_features, h1, ..., n_outputs]``, the
    activation on every hidden layer, a linear output (logits or regression values; one output
    is returned as (n,)). Forward and backward in NumPy; the HVP of its objective uses central
    differences of gradients (see the module docs)."""

    def __init__(self, layer_sizes: Sequence[int], activation: str = "tanh") -> None:
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes needs at least two positive sizes; got {layer_sizes!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        self.layer_sizes, self.activation = sizes, activation
        specs: List[ParamSpec] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            specs += [ParamSpec(f"weight{i}", (fan_out, fan_in), "weight"),
                      ParamSpec(f"bias{i}", (fan_out,), "bias")]
        self.param_specs = tuple(specs)

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def init_params(self, seed: Any = None, dtype=np.float64) -> np.ndarray:
        """Xavier-uniform weights with the activation's gain (``init.calculate_gain``), zero biases."""
        rng = np.random.default_rng(seed)
        gain = _init.calculate_gain(self.activation)
        return self.flatten({s.name: (_init.xavier_uniform(s.shape, gain=gain, seed=rng, dtype=dtype)
                                      if s.kind == "weight" else np.zeros(s.shape, dtype))
                             for s in self.param_specs})

    def _forward(self, theta, X):
        p = self.unflatten(theta)
        act = _ACTIVATIONS[self.activation][0]
        a = _check_X(X, self.layer_sizes[0])
        inputs, pre = [a], []
        for i in range(self.n_layers):
            z = a @ p[f"weight{i}"].T + p[f"bias{i}"]
            pre.append(z)
            a = act(z) if i < self.n_layers - 1 else z
            inputs.append(a)
        return p, inputs, pre

    def predict(self, theta, X) -> np.ndarray:
        out = self._forward(theta, X)[1][-1]
        return out[:, 0] if self.layer_sizes[-1] == 1 else out

    def vjp(self, theta, X, cotangent) -> np.ndarray:
        p, inputs, pre = self._forward(theta, X)
        dact = _ACTIVATIONS[self.activation][1]
        g = np.asarray(cotangent)
        g = g[:, None] if g.ndim == 1 else g
        grads = {}
        for i in reversed(range(self.n_layers)):
            grads[f"weight{i}"] = g.T @ inputs[i]
            grads[f"bias{i}"] = g.sum(axis=0)
            if i:
                g = (g @ p[f"weight{i}"]) * dact(pre[i - 1], inputs[i])
        return self.flatten(grads)


class Objective:
    """``L(theta) = loss(y, model.predict(theta, X), sample_weight) + l2/2 ||theta||^2``.

    ``loss`` is any fastloss loss (its own reduction is used; default: the model's default loss).
    Computations run in ``X``'s dtype (float32 or float64); ``theta`` is cast to it.
    ``hvp_exact`` says whether Hessian-vector products are exact (see the module docs).
    """

    def __init__(self, model: Model, X, y, loss: Optional[Loss] = None, sample_weight=None,
                 l2: float = 0.0) -> None:
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        self.model, self.X, self.y = model, X, np.asarray(y)
        self.loss = model.default_loss() if loss is None else loss
        if not isinstance(self.loss, Loss):
            raise TypeError(f"loss must be a fastloss Loss; got {type(self.loss).__name__}")
        if len(self.y) != X.shape[0]:
            raise ValueError(f"y has {len(self.y)} rows but X has {X.shape[0]}: shapes {self.y.shape} and {X.shape}")
        self.sample_weight = sample_weight
        self.l2 = float(l2)
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be finite and >= 0; got {l2}")
        self.hvp_exact = bool(model.linear and isinstance(self.loss, ElementwiseLoss))
        self._cache: Dict[str, Any] = {}
        self._f64: Optional["Objective"] = None  # float64 copy for central-difference HVPs
        self.n_hvp = 0  # Hessian-vector products computed (benchmarks and Lanczos report it)

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def astype(self, dtype) -> "Objective":
        """The same objective computed in another dtype (``X`` cast; labels and weights kept)."""
        return Objective(self.model, self.X.astype(dtype), self.y, self.loss, self.sample_weight, self.l2)

    def _theta(self, theta) -> np.ndarray:
        return np.asarray(self.model._check_theta(theta), dtype=self.dtype)

    def _at(self, theta) -> Dict[str, Any]:
        """Predictions at theta, computed once per theta (a copy of theta is the cache key)."""
        c = self._cache
        if "theta" not in c or not np.array_equal(c["theta"], theta):
            c.clear()
            c["theta"] = theta.copy()
            c["z"] = self.model.predict(theta, self.X)
        return c

    def value(self, theta) -> float:
        theta = self._theta(theta)
        v = self.loss(self.y, self._at(theta)["z"], self.sample_weight)
        return float(v) + 0.5 * self.l2 * float(np.dot(theta, theta))

    def value_and_grad(self, theta) -> Tuple[float, np.ndarray]:
        theta = self._theta(theta)
        v, gz = self.loss.value_and_grad(self.y, self._at(theta)["z"], self.sample_weight)
        g = self.model.vjp(theta, self.X, gz)
        if self.l2:
            g = g + self.l2 * theta
        return float(v) + 0.5 * self.l2 * float(np.dot(theta, theta)), g

    def grad(self, theta) -> np.ndarray:
        return self.value_and_grad(theta)[1]

    def hvp(self, theta, v) -> np.ndarray:
        """``H(theta) v``: exact for linear models with an elementwise loss, else central
        differences of gradients (module docs). ``v`` may be a block (n_params, b) of vectors:
        the exact product then reads ``X`` once for the whole block."""
        theta = self._theta(theta)
        v = np.asarray(v, dtype=self.dtype)
        if v.shape[:1] != theta.shape or v.ndim > 2:
            raise ValueError(f"v must have the shape of theta {theta.shape}, or ({theta.size}, b); got {v.shape}")
        self.n_hvp += 1 if v.ndim == 1 else v.shape[1]
        if not self.hvp_exact:
            if v.ndim == 2:
                return np.stack([self._hvp_central(theta, col) for col in v.T], axis=-1).reshape(v.shape)
            return self._hvp_central(theta, v)
        c = self._at(theta)
        if "h" not in c:
            c["h"] = self.loss.grad_hess(self.y, c["z"], self.sample_weight)[1]
        h = c["h"] if v.ndim == 1 else c["h"][..., None]
        out = self.model.vjp(theta, self.X, h * self.model.jvp(theta, self.X, v))
        if self.l2:
            out += self.l2 * v
        return out

    def _hvp_central(self, theta, v) -> np.ndarray:
        norm_v = float(np.linalg.norm(v))
        if norm_v == 0.0:
            return np.zeros_like(v)
        # The differences run in float64 (a float64 copy of a float32 objective, made once): in
        # float32 the best central step still leaves errors of order eps32^(2/3), about 1e-5.
        f64 = self if self.dtype == np.float64 else self._float64()
        theta64, v64 = theta.astype(np.float64), v.astype(np.float64)
        eps = np.finfo(np.float64).eps ** (1.0 / 3.0) * max(1.0, float(np.linalg.norm(theta64))) / norm_v
        saved = dict(f64._cache)  # keep the caller's point cached, not theta +- e v
        g_plus, g_minus = f64.grad(theta64 + eps * v64), f64.grad(theta64 - eps * v64)
        f64._cache = saved
        return ((g_plus - g_minus) / (2.0 * eps)).astype(self.dtype, copy=False)

    def _float64(self) -> "Objective":
        if self._f64 is None:
            self._f64 = self.astype(np.float64)
        return self._f64

    def hessian(self, theta) -> np.ndarray:
        """The dense Hessian from ``n_params`` HVPs (small problems only), symmetrized."""
        H = self.hvp(theta, np.eye(self.n_params, dtype=self.dtype))
        return 0.5 * (H + H.T)
