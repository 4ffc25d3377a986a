# Types of the compiled module (cpp/bindings/*.cpp). Array arguments are anything NumPy
# converts (the kernels check dtypes and shapes); results are float32/float64 arrays.
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]
# (weighted sum, the mean's denominator, per-item values under reduction="none", gradient,
# Hessian diagonal)
KernelResult = Tuple[float, float, Optional[FloatArray], Optional[FloatArray], Optional[FloatArray]]

build: Dict[str, int | str]
elementwise_kernels: Dict[str, int]
row_kernels: Dict[str, int]
ranking_kernels: Dict[str, int]
# C++ enumerations, name -> value
metrics: Dict[str, int]
mining: Dict[str, int]
softmax_modes: Dict[str, int]
activations: Dict[str, int]
dice_kinds: Dict[str, int]
reductions: Dict[str, int]
max_threads: int
cached_block_min: int
vmath_functions: List[str]

def available_isas() -> List[str]: ...
def compiled_isas() -> List[str]: ...
def selected_isa() -> str: ...
def select_isa(arg0: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(arg0: int) -> None: ...
def swap_thread_num_threads(arg0: int) -> int: ...
def swap_block_cache_limit(arg0: int) -> int: ...
def block_cache_info() -> Tuple[int, int, int]: ...
def vmath(name: str, x: NDArray[np.floating[Any]], out: Optional[FloatArray] = ...) -> FloatArray: ...
def elementwise(
    loss: int, params: Sequence[float], y_true: ArrayLike, y_pred: ArrayLike,
    sample_weight: Optional[ArrayLike], aux: Optional[ArrayLike], reduction: str, want_grad: bool,
    want_hess: bool, out: Optional[FloatArray], grad_out: Optional[FloatArray],
    hess_out: Optional[FloatArray]) -> KernelResult: ...
# The common elementwise call in one step (plain float ndarrays, reduction "mean" or "sum"): the
# value, (value, grad), (grad, hess) or (value, grad, hess) for want 0..3; otherwise NotImplemented
# (the caller then takes the general path). spec: (loss id, check, has_hessian, reduction,
# *params), made by ElementwiseLoss._fast_spec; args: (y_true, y_pred[, sample_weight]).
def elementwise_fast(spec: tuple, args: tuple, sample_weight: object, reduction: Optional[str],
                     grad_out: object, hess_out: object, want: int) -> Any: ...
def first_bad_sign_label(y_true: ArrayLike) -> int: ...
def first_bad_real_label(y_true: ArrayLike, low: float, closed: bool) -> int: ...
def first_outside_unit_interval(values: ArrayLike, name: str) -> int: ...
def first_bad_label(labels: ArrayLike, num_classes: int) -> int: ...
def rowwise(
    loss: int, params: Sequence[float], y_true: Optional[ArrayLike], y_pred: ArrayLike,
    sample_weight: Optional[ArrayLike], extra: Optional[ArrayLike],
    class_weight: Optional[ArrayLike], ignore_index: Optional[int], reduction: str,
    want_grad: bool, want_hess: bool, out: Optional[FloatArray], grad_out: Optional[FloatArray],
    hess_out: Optional[FloatArray]) -> KernelResult: ...
def softmax(x: ArrayLike, mode: int) -> FloatArray: ...
def groupwise(
    loss: int, params: Sequence[float], y_true: ArrayLike, y_pred: ArrayLike, offsets: ArrayLike,
    sample_weight: Optional[ArrayLike], reduction: str, want_grad: bool, want_hess: bool,
    out: Optional[FloatArray], grad_out: Optional[FloatArray],
    hess_out: Optional[FloatArray], want_value: bool = True,
    group_data: Optional[ArrayLike] = None) -> KernelResult: ...
def lambda_rank_inverse_max_dcg(k: float, y_true: ArrayLike, offsets: ArrayLike) -> FloatArray: ...
def margin_ranking(
    params: Sequence[float], y_true: ArrayLike, x1: ArrayLike, x2: ArrayLike,
    sample_weight: Optional[ArrayLike], reduction: str, want_grad: bool) -> KernelResult: ...
def ssim(
    y_true: ArrayLike, y_pred: ArrayLike, c1: float, c2: float,
    scale_weights: Optional[Sequence[float]], grad_scale: Optional[ArrayLike], want_map: bool,
    grad_out: Optional[FloatArray] = None,
) -> Tuple[FloatArray, Optional[FloatArray], Optional[FloatArray]]: ...
def dice(y_true: ArrayLike, y_pred: ArrayLike, activation: int, kind: int, squared: bool,
         smooth_nr: float, smooth_dr: float, alpha: float, beta: float,
         class_weight: Optional[ArrayLike], batch: bool, scale: Optional[ArrayLike],
         grad_out: Optional[FloatArray] = None) -> Tuple[NDArray[np.float64], Optional[FloatArray]]: ...
def sim_row_norms(x: FloatArray, eps: float,
                  want_xhat: bool) -> Tuple[NDArray[np.float64], Optional[FloatArray]]: ...
def sim_dist_from_gram(gram: FloatArray, nx: ArrayLike, ny: ArrayLike, metric: int,
                       self: bool) -> None: ...
def sim_mine(gram: FloatArray, sqn: ArrayLike, labels: IntArray, class_count: IntArray,
             metric: int, mode: int, seed: int, offset: Optional[IntArray], margin: float,
             soft: bool) -> Tuple[NDArray[Any], ...]: ...
def sim_pair_grad(x: FloatArray, sqn: ArrayLike, metric: int, eps: float, i: IntArray,
                  j: IntArray, dist: FloatArray, coef: FloatArray) -> FloatArray: ...
def sim_normalize_backward(g: FloatArray, xhat: FloatArray, sqn: FloatArray,
                           eps: float) -> None: ...
def sim_paired_distance(x1: FloatArray, x2: FloatArray, p: float,
                        eps: float) -> NDArray[np.float64]: ...
def sim_paired_distance_grad(x1: FloatArray, x2: FloatArray, p: float, eps: float,
                             dist: FloatArray, coef: FloatArray) -> FloatArray: ...
def sim_margin_softmax(
    cos: FloatArray, labels: IntArray, s: float, m: float, arc: bool, easy: bool,
    weight: Optional[ArrayLike], grad_scale: float, want_grad: bool, want_rows: bool,
) -> Tuple[float, Optional[NDArray[np.float64]]]: ...
def cox(
    efron: bool, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: Optional[NDArray[np.float64]],
    event: Optional[NDArray[np.uint8]], reduction: str, want_grad: bool, want_hess: bool,
    out: Optional[FloatArray], grad_out: Optional[FloatArray],
    hess_out: Optional[FloatArray]) -> KernelResult: ...
def concordance(time: NDArray[np.float64], event: NDArray[np.uint8],
                risk: NDArray[np.float64]) -> Tuple[int, int, int]: ...
def wasserstein_1d(
    u: FloatArray, v: FloatArray, u_order: Optional[IntArray], v_order: Optional[IntArray],
    u_weights: Optional[NDArray[np.float64]], v_weights: Optional[NDArray[np.float64]],
    u_inv_sum: Optional[NDArray[np.float64]], v_inv_sum: Optional[NDArray[np.float64]], p: float,
    grad_scale: float, want_grad: bool, want_hess: bool,
) -> Tuple[NDArray[np.float64], Optional[FloatArray], Optional[FloatArray]]: ...
def sinkhorn(
    cost: Optional[FloatArray], x: Optional[FloatArray], y: Optional[FloatArray],
    a: ArrayLike, b: ArrayLike, epsilon: float, max_iter: int, tol: float, want_plan: bool,
    want_grad: bool,
) -> Tuple[float, float, NDArray[np.float64], NDArray[np.float64], int, float,
           Optional[FloatArray], Optional[FloatArray], Optional[FloatArray]]: ...
