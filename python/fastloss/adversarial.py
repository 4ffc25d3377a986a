"""Adversarial (GAN) losses on discriminator outputs, the WGAN critic objective, and the gradient
penalties of WGAN-GP and R1.

Every loss is a mean over the elements of each term and comes with its gradients with respect to
the discriminator outputs (``real``: on data, ``fake``: on generated samples). The logistic
losses take logits and use the stable softplus forms of fastloss's binary cross-entropy kernel
(``log sigmoid(z) = -softplus(-z)``), so no probability is ever clamped. The penalties take the
critic's gradients with respect to its inputs, ``g`` (batch first), which the user's autodiff
framework computes; fastloss returns the penalty and its gradient with respect to ``g``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._validate import choice, finite_float, non_negative, real_array
from .classification import BinaryCrossEntropy, Hinge
from .regression import MSE

__all__ = ["AdversarialLoss", "GradientPenalty", "R1Penalty", "wasserstein_critic"]

KINDS = ("minimax", "non_saturating", "lsgan", "wgan", "hinge")

_LOGISTIC = BinaryCrossEntropy(from_logits=True)  # y softplus(-z) + (1 - y) softplus(z)
_HINGE = Hinge()                                   # max(0, 1 - y z)
_SQUARE = MSE()                                    # (z - y)^2


def _scores(x: Any, name: str) -> np.ndarray:
    a = real_array(x, name)
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    return a


def _term(kernel, label: float, z: np.ndarray, scale: float = 1.0) -> Tuple[float, np.ndarray]:
    """scale * mean_k kernel(label, z_k) and its gradient, from one fused kernel pass."""
    value, grad = kernel.value_and_grad(np.broadcast_to(np.asarray(label, z.dtype), z.shape), z)
    if scale != 1.0:
        grad *= z.dtype.type(scale)
    return scale * value, grad


def _mean_term(z: np.ndarray, sign: float) -> Tuple[float, np.ndarray]:
    """sign * mean(z) and its gradient."""
    return sign * float(np.mean(z, dtype=np.float64)), np.full(z.shape, sign / z.size, z.dtype)


class AdversarialLoss:
    """GAN losses on discriminator outputs: ``discriminator(real, fake)`` and
    ``generator(fake)``, and their ``*_value_and_grad`` forms (gradients w.r.t. the outputs).

    ``kind`` (``z`` the discriminator's logits / the critic's scores, means over elements):

    - ``"minimax"`` (Goodfellow et al. 2014): ``L_D = -E log sigmoid(z_real) - E log(1 -
      sigmoid(z_fake)) = E softplus(-z_real) + E softplus(z_fake)``; ``L_G = E log(1 -
      sigmoid(z_fake)) = -E softplus(z_fake)`` (saturates when D wins).
    - ``"non_saturating"``: the same ``L_D``; ``L_G = -E log sigmoid(z_fake) = E softplus(-z_fake)``.
    - ``"lsgan"`` (Mao et al. 2017), on raw outputs: ``L_D = 1/2 E (z_real - b)^2 + 1/2 E (z_fake -
      a)^2``, ``L_G = 1/2 E (z_fake - c)^2``; defaults a = 0, b = c = 1.
    - ``"wgan"`` (Arjovsky et al. 2017), critic scores: ``L_D = E z_fake - E z_real`` (minus the
      critic objective, :func:`wasserstein_critic`), ``L_G = -E z_fake``.
    - ``"hinge"`` (Miyato et al. 2018): ``L_D = E max(0, 1 - z_real) + E max(0, 1 + z_fake)``,
      ``L_G = -E z_fake``.

    ``real`` and ``fake`` may have different shapes (each term is its own mean). Gradients have the
    shape and dtype of their input.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> gan = fl.AdversarialLoss("non_saturating")
    >>> round(gan.discriminator(np.zeros(4), np.zeros(4)), 6)  # 2 log 2
    1.386294
    >>> value, g_fake = gan.generator_value_and_grad(np.zeros(2))
    >>> g_fake.tolist()
    [-0.25, -0.25]
    """

    def __init__(self, kind: str = "non_saturating", *, a: float = 0.0, b: float = 1.0,
                 c: float = 1.0) -> None:
        self.kind = choice(*KINDS)("kind", kind)
        self.a, self.b, self.c = (finite_float(n, v) for n, v in (("a", a), ("b", b), ("c", c)))

    def __repr__(self) -> str:
        extra = f", a={self.a}, b={self.b}, c={self.c}" if self.kind == "lsgan" else ""
        return f"AdversarialLoss({self.kind!r}{extra})"

    def discriminator_value_and_grad(self, real, fake) -> Tuple[float, np.ndarray, np.ndarray]:
        """``(L_D, dL_D/d real, dL_D/d fake)``."""
        zr, zf = _scores(real, "real"), _scores(fake, "fake")
        if self.kind in ("minimax", "non_saturating"):
            (vr, gr), (vf, gf) = _term(_LOGISTIC, 1.0, zr), _term(_LOGISTIC, 0.0, zf)
        elif self.kind == "lsgan":
            (vr, gr), (vf, gf) = _term(_SQUARE, self.b, zr, 0.5), _term(_SQUARE, self.a, zf, 0.5)
        elif self.kind == "wgan":
            (vr, gr), (vf, gf) = _mean_term(zr, -1.0), _mean_term(zf, 1.0)
        else:  # hinge: max(0, 1 - z) on real, max(0, 1 + z) on fake
            (vr, gr), (vf, gf) = _term(_HINGE, 1.0, zr), _term(_HINGE, -1.0, zf)
        return vr + vf, gr, gf

    def generator_value_and_grad(self, fake) -> Tuple[float, np.ndarray]:
        """``(L_G, dL_G/d fake)``."""
        zf = _scores(fake, "fake")
        if self.kind == "minimax":
            value, grad = _term(_LOGISTIC, 0.0, zf)
            return -value, np.negative(grad, out=grad)
        if self.kind == "non_saturating":
            return _term(_LOGISTIC, 1.0, zf)
        if self.kind == "lsgan":
            return _term(_SQUARE, self.c, zf, 0.5)
        return _mean_term(zf, -1.0)  # wgan, hinge

    def discriminator(self, real, fake) -> float:
        return self.discriminator_value_and_grad(real, fake)[0]

    def generator(self, fake) -> float:
        return self.generator_value_and_grad(fake)[0]


def _weighted_mean(z: np.ndarray, w: Optional[Any], name: str) -> Tuple[float, np.ndarray]:
    """The weighted mean of z and its gradient w / sum(w) (1/n without weights)."""
    if w is None:
        return float(np.mean(z, dtype=np.float64)), np.full(z.shape, 1.0 / z.size)
    wa = np.asarray(w, dtype=np.float64)
    if wa.shape != z.shape:
        raise ValueError(f"{name} must have the shape of its scores {z.shape}; got {wa.shape}")
    if not np.all(np.isfinite(wa)) or np.any(wa < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    total = wa.sum()
    if not total > 0:
        raise ValueError(f"{name} must sum to a positive number")
    return float(np.dot(wa.ravel(), z.ravel().astype(np.float64)) / total), wa / total


def wasserstein_critic(real, fake, *, real_weight=None, fake_weight=None, grad=False):
    """The WGAN critic objective ``E[f(real)] - E[f(fake)]`` (the dual form of the Wasserstein-1
    distance, Arjovsky et al. 2017) over critic outputs ``f``, with optional sample weights
    (weighted means).

    The critic maximizes it (its loss is the negative, ``AdversarialLoss("wgan").discriminator``);
    it estimates W_1 only for a 1-Lipschitz critic (clipping or :class:`GradientPenalty`).
    With ``grad=True`` returns ``(value, d/d real, d/d fake)``: ``w_i / sum(w)`` and
    ``-w_j / sum(w)``, in the dtypes of the scores.

    >>> import numpy as np, fastloss as fl
    >>> fl.wasserstein_critic(np.array([1.0, 3.0]), np.array([0.5]))
    1.5
    """
    zr, zf = _scores(real, "real"), _scores(fake, "fake")
    vr, gr = _weighted_mean(zr, real_weight, "real_weight")
    vf, gf = _weighted_mean(zf, fake_weight, "fake_weight")
    value = vr - vf
    if not grad:
        return value
    return value, gr.astype(zr.dtype), (-gf).astype(zf.dtype)


def _per_sample_sq_norms(g: np.ndarray) -> np.ndarray:
    """sum over all non-batch axes of g^2, per sample, accumulated in float64."""
    flat = g.reshape(g.shape[0], -1)
    return np.einsum("ij,ij->i", flat, flat, dtype=np.float64)


def _penalty_input(g: Any) -> np.ndarray:
    a = _scores(g, "g")
    if a.ndim < 1:
        raise ValueError(f"g must have a batch axis (first); got shape {a.shape}")
    return a


class GradientPenalty:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017): ``lam * mean_i (||g_i||_2 - target)^2``.

    ``g`` holds the critic's gradients w.r.t. its inputs (at the interpolates), batch first; the
    norm of each sample runs over all its other axes. ``value_and_grad(g)`` also returns
    ``d/dg = 2 lam (||g_i|| - target) g_i / (N ||g_i||)``, taken as 0 for a sample with
    ``g_i = 0`` (where the norm is not differentiable; PyTorch's autograd gives the same).

    Parameters
    ----------
    lam : float >= 0, default 10
    target : float >= 0, default 1 (the Lipschitz constant)

    >>> import numpy as np, fastloss as fl
    >>> fl.GradientPenalty(lam=10)(np.array([[3.0, 4.0], [0.6, 0.8]]))  # norms 5 and 1
    80.0
    """

    def __init__(self, lam: float = 10.0, target: float = 1.0) -> None:
        self.lam = non_negative("lam", lam)
        self.target = non_negative("target", target)

    def __repr__(self) -> str:
        return f"GradientPenalty(lam={self.lam}, target={self.target})"

    def __call__(self, g) -> float:
        a = _penalty_input(g)
        norms = np.sqrt(_per_sample_sq_norms(a))
        return self.lam * float(np.mean((norms - self.target) ** 2))

    def value_and_grad(self, g) -> Tuple[float, np.ndarray]:
        a = _penalty_input(g)
        n = a.shape[0]
        norms = np.sqrt(_per_sample_sq_norms(a))
        value = self.lam * float(np.mean((norms - self.target) ** 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.where(norms > 0, 2 * self.lam * (norms - self.target) / (n * norms), 0.0)
        grad = a * coef.astype(a.dtype).reshape((n,) + (1,) * (a.ndim - 1))
        return value, grad


class R1Penalty:
    """R1 penalty (Mescheder et al. 2018): ``(gamma / 2) mean_i ||g_i||_2^2``, ``g`` the
    discriminator's gradients w.r.t. its real inputs (batch first; the squared norm of each
    sample over all its other axes, the mean over the batch, as in StyleGAN2).
    ``value_and_grad(g)`` also returns ``d/dg = gamma g / N``.

    >>> import numpy as np, fastloss as fl
    >>> fl.R1Penalty(gamma=2.0)(np.array([[3.0, 4.0], [0.0, 1.0]]))
    13.0
    """

    def __init__(self, gamma: float = 10.0) -> None:
        self.gamma = non_negative("gamma", gamma)

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"

    def __call__(self, g) -> float:
        return 0.5 * self.gamma * float(np.mean(_per_sample_sq_norms(_penalty_input(g))))

    def value_and_grad(self, g) -> Tuple[float, np.ndarray]:
        a = _penalty_input(g)
        value = 0.5 * self.gamma * float(np.mean(_per_sample_sq_norms(a)))
        return value, a * a.dtype.type(self.gamma / a.shape[0])
