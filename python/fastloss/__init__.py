"""fastloss: loss functions, their gradients and Hessian diagonals over NumPy arrays, computed by
fused SIMD/OpenMP C++ kernels.

Conventions (every loss): ``loss(y_true, y_pred)`` -- truth first, prediction second; derivatives
with respect to ``y_pred``; ``reduction="mean"`` is the weighted mean ``sum(w*l)/sum(w)``.
"""

from ._runtime import (
    __version__,
    _select_isa_from_environment,
    buffer_cache_info,
    build_info,
    get_num_threads,
    num_threads,
    select_isa,
    set_buffer_cache,
    set_num_threads,
)

_select_isa_from_environment()

from ._base import Loss, LossInfo, get_loss, losses  # noqa: E402
from .classification import (  # noqa: E402
    BinaryCrossEntropy, BinaryFocal, Hinge, Logistic, SmoothHinge, SquaredHinge,
    binary_cross_entropy, binary_focal, hinge, logistic, smooth_hinge, squared_hinge,
)
from .multiclass import (  # noqa: E402
    CategoricalCrossEntropy, CategoricalFocal, Distillation, KLDivergence, MultiClassHinge,
    SparseCategoricalCrossEntropy, SparseCategoricalFocal,
    categorical_cross_entropy, categorical_focal, class_weights, distillation, kl_divergence,
    log_softmax, logsumexp, multi_class_hinge, smooth_labels, softmax,
    sparse_categorical_cross_entropy, sparse_categorical_focal,
)
from .image import MSSSIMLoss, SSIMLoss, ms_ssim_loss, ssim_loss  # noqa: E402
from .segmentation import (  # noqa: E402
    DiceLoss, GeneralizedDiceLoss, TverskyLoss, dice_loss, generalized_dice_loss, tversky_loss,
)
from .transport import (  # noqa: E402
    SinkhornLoss, SinkhornResult, SlicedWasserstein, Wasserstein1D, random_projections, sinkhorn,
    sinkhorn_loss, sliced_wasserstein, wasserstein_1d,
)
from .survival import AFT, CoxPH, aft, concordance_index, cox_ph  # noqa: E402
from .adversarial import AdversarialLoss, GradientPenalty, R1Penalty, wasserstein_critic  # noqa: E402
from .perceptual import PerceptualLoss, perceptual  # noqa: E402
from .regression import (  # noqa: E402
    MAE, MSE, Huber, LogCosh, Quantile, SmoothL1, huber, log_cosh, mae, mse, quantile, smooth_l1,
)
from .likelihood import (  # noqa: E402
    GammaNLL, GaussianNLL, PoissonNLL, TweedieNLL, gamma_nll, gaussian_nll, poisson_nll, tweedie_nll,
)
from .accumulate import GradientAccumulator, partial_sum  # noqa: E402
from .composite import MultiTask, MultiTaskResult, UncertaintyResult, UncertaintyWeighting  # noqa: E402
from .consistency import (  # noqa: E402
    ConsistencyMSE, GraphConsistency, GridConsistency, TemporalConsistency, consistency_mse,
)
from .progressive import (  # noqa: E402
    SelfPaced, SelfPacedResult, curriculum_fraction, curriculum_indices, self_paced_objective,
    self_paced_weights,
)
from .regularizers import L1, L2, ElasticNet, Regularized  # noqa: E402
from .similarity import (  # noqa: E402
    ArcFace, BatchContrastive, BatchTripletMargin, CenterLoss, Contrastive, CosFace, TripletMargin,
    pairwise_distances, pairwise_distances_backward, update_centers,
)
from .ranking import (  # noqa: E402
    LambdaRank, ListMLE, ListNet, MarginRanking, RankNet, lambda_rank, list_mle, list_net,
    margin_ranking, mean_average_precision, mrr, ndcg, rank_net,
)

arcface, cosface, contrastive, batch_contrastive = (
    ArcFace.functional, CosFace.functional, Contrastive.functional, BatchContrastive.functional)
triplet_margin, batch_triplet_margin, center_loss = (
    TripletMargin.functional, BatchTripletMargin.functional, CenterLoss.functional)

__all__ = [
    "__version__", "build_info", "get_num_threads", "set_num_threads", "num_threads", "select_isa",
    "set_buffer_cache", "buffer_cache_info",
    "Loss", "LossInfo", "losses", "get_loss",
    "MSE", "MAE", "Huber", "SmoothL1", "Quantile", "LogCosh",
    "mse", "mae", "huber", "smooth_l1", "quantile", "log_cosh",
    "BinaryCrossEntropy", "Logistic", "BinaryFocal", "Hinge", "SquaredHinge", "SmoothHinge",
    "binary_cross_entropy", "logistic", "binary_focal", "hinge", "squared_hinge", "smooth_hinge",
    "SparseCategoricalCrossEntropy", "CategoricalCrossEntropy", "sparse_categorical_cross_entropy",
    "categorical_cross_entropy", "MultiClassHinge", "multi_class_hinge",
    "SparseCategoricalFocal", "sparse_categorical_focal", "CategoricalFocal", "categorical_focal",
    "Distillation", "distillation", "KLDivergence", "kl_divergence",
    "logsumexp", "softmax", "log_softmax", "smooth_labels",
    "class_weights",
    "GradientAccumulator", "partial_sum",
    "MultiTask", "MultiTaskResult", "UncertaintyWeighting", "UncertaintyResult",
    "ConsistencyMSE", "consistency_mse", "TemporalConsistency", "GraphConsistency", "GridConsistency",
    "SelfPaced", "SelfPacedResult", "self_paced_weights", "self_paced_objective",
    "curriculum_fraction", "curriculum_indices",
    "L1", "L2", "ElasticNet", "Regularized",
    "SSIMLoss", "MSSSIMLoss", "ssim_loss", "ms_ssim_loss",
    "DiceLoss", "GeneralizedDiceLoss", "TverskyLoss", "dice_loss", "generalized_dice_loss",
    "tversky_loss",
    "pairwise_distances", "pairwise_distances_backward", "update_centers",
    "Contrastive", "BatchContrastive", "TripletMargin", "BatchTripletMargin", "CenterLoss",
    "CosFace", "ArcFace", "contrastive", "batch_contrastive", "triplet_margin",
    "batch_triplet_margin", "center_loss", "cosface", "arcface",
    "RankNet", "LambdaRank", "ListNet", "ListMLE", "MarginRanking", "rank_net", "lambda_rank",
    "list_net", "list_mle", "margin_ranking", "ndcg", "mean_average_precision", "mrr",
    "Wasserstein1D", "SlicedWasserstein", "SinkhornLoss", "SinkhornResult", "wasserstein_1d",
    "sliced_wasserstein", "sinkhorn", "sinkhorn_loss", "random_projections",
    "AdversarialLoss", "GradientPenalty", "R1Penalty", "wasserstein_critic",
    "PerceptualLoss", "perceptual",
    "PoissonNLL", "GammaNLL", "TweedieNLL", "GaussianNLL",
    "poisson_nll", "gamma_nll", "tweedie_nll", "gaussian_nll",
    "CoxPH", "AFT", "cox_ph", "aft", "concordance_index",
]
