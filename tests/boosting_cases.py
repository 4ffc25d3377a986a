"""What the XGBoost and LightGBM integration tests share: the adapter cases with their NumPy
references (gradient and Hessian under each case's Hessian policy), synthetic data, and the
imbalanced set on which focal must beat logistic.

The metric for the imbalanced set (documented in docs/integrations.md): balanced accuracy of the
held-out predictions at the 0.5 probability threshold (margin 0).
"""

import numpy as np

import fastloss as fl

import reference as R

FLOOR = 1e-16


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _onehot(y, k):
    return np.eye(k)[y.astype(int)]


# name -> (loss factory, task, hessian policy, reference(y, z) -> (g, h) before weights and floor)
CASES = {
    "mse": (fl.MSE, "regression", "clip", lambda y, z: R.mse(z - y)[1:]),
    "log_cosh": (fl.LogCosh, "regression", "clip", lambda y, z: R.log_cosh(z - y)[1:]),
    "quantile": (lambda: fl.Quantile(quantile=0.8), "regression", "fisher",
                 lambda y, z: (R.quantile(z - y, 0.8)[1], np.ones_like(z))),
    "logistic": (fl.Logistic, "binary", "clip", lambda y, z: R.logistic(y, z)[1:]),
    "focal": (lambda: fl.BinaryFocal(gamma=2.0, alpha=0.75, from_logits=True), "binary", "fisher",
              lambda y, z: (R.focal_logits(y, z, 2.0, 0.75)[1], sigmoid(z) * sigmoid(-z))),
    "smooth_hinge": (fl.SmoothHinge, "binary", "fisher",
                     lambda y, z: (R.smooth_hinge(y, z)[1], sigmoid(z) * sigmoid(-z))),
    "softmax": (lambda: fl.SparseCategoricalCrossEntropy(from_logits=True), "multiclass", "clip",
                lambda y, z: (softmax(z) - _onehot(y, z.shape[1]), softmax(z) * (1 - softmax(z)))),
}
N_CLASSES = 3


def reference_grad_hess(name, y, z, w=None):
    """The adapter's expected (grad, hess) in float64: weighted, Hessian floored per unit weight."""
    _, _, policy, ref = CASES[name]
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    g, h = ref(y, z)
    if policy != "exact":
        h = np.maximum(h, FLOOR)
    if w is not None:
        wb = np.asarray(w, np.float64).reshape(-1, *([1] * (z.ndim - 1)))
        g, h = g * wb, h * wb
    return g, h


def task_data(task, rng, n=400):
    """Features, float32 labels and weights for a task."""
    X = rng.normal(size=(n, 4))
    if task == "regression":
        y = X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(0, 0.3, n)
    elif task == "binary":
        y = (X[:, 0] + rng.normal(0, 1, n) > 0.3).astype(float)
    else:
        y = np.digitize(X[:, 0] + rng.normal(0, 0.5, n), [-0.5, 0.5]).astype(float)
    return X, y.astype(np.float32), rng.random(n) + 0.5


def imbalanced(seed, n=3000):
    """About 7 % positives, driven by two of five features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    logit = 2.5 * X[:, 0] + 1.5 * X[:, 1] - 5.0
    y = (rng.random(n) < sigmoid(logit)).astype(np.float32)
    return X, y


def balanced_accuracy(y, margin):
    """Mean of the recalls of the two classes at margin 0 (probability 0.5)."""
    pred = margin > 0
    pos = y == 1
    return 0.5 * (np.mean(pred[pos]) + np.mean(~pred[~pos]))


FOCAL = fl.BinaryFocal(gamma=2.0, alpha=0.75, from_logits=True)
