// The one list of kernels. Each family has its own X-macro (so its kernels compile in their own
// translation unit per ISA); the binding, the dispatch table and the Python contract test are all
// generated from these lists. X(python_name, BodyTemplate)
#pragma once

#define FASTLOSS_REGRESSION_LOSSES(X) \
  X(mse, MSE)                         \
  X(mae, MAE)                         \
  X(huber, Huber)                     \
  X(smooth_l1, SmoothL1)              \
  X(quantile, Quantile)               \
  X(log_cosh, LogCosh)

#define FASTLOSS_BINARY_LOSSES(X) \
  X(bce_logits, BCELogits)          \
  X(bce_probs, BCEProbs)            \
  X(logistic, Logistic)             \
  X(focal_logits, FocalLogits)      \
  X(focal_probs, FocalProbs)        \
  X(hinge, Hinge)                   \
  X(squared_hinge, SquaredHinge)    \
  X(smooth_hinge, SmoothHinge)

// Likelihood losses with a log link (cpp/losses/likelihood.hpp); GaussianNLL is a row of 2.
#define FASTLOSS_LIKELIHOOD_LOSSES(X) \
  X(poisson_nll, PoissonNLL)          \
  X(poisson_nll_full, PoissonNLLFull) \
  X(gamma_nll, GammaNLL)              \
  X(tweedie_nll, TweedieNLL)
#define FASTLOSS_LIKELIHOOD_ROW_LOSSES(X) X(gaussian_nll, GaussianNLL)

// Accelerated failure time, one body per noise distribution (cpp/losses/survival.hpp).
#define FASTLOSS_SURVIVAL_LOSSES(X) \
  X(aft_normal, AFTNormal)          \
  X(aft_logistic, AFTLogistic)      \
  X(aft_extreme, AFTExtreme)

#define FASTLOSS_ELEMENTWISE_LOSSES(X)                                                     \
  FASTLOSS_REGRESSION_LOSSES(X) FASTLOSS_BINARY_LOSSES(X) FASTLOSS_LIKELIHOOD_LOSSES(X) \
  FASTLOSS_SURVIVAL_LOSSES(X)

// Row-wise losses on a class axis: X(python_name, BodyTemplate), the body declaring its RowSpec.
#define FASTLOSS_MULTICLASS_LOSSES(X)                          \
  X(sparse_categorical_cross_entropy, SparseCrossEntropy)      \
  X(categorical_cross_entropy, CategoricalCrossEntropy)        \
  X(sparse_categorical_focal, SparseFocal)                     \
  X(categorical_focal, CategoricalFocal)                       \
  X(multi_class_hinge, MultiMargin)

#define FASTLOSS_DISTILLATION_LOSSES(X) X(distillation, Distillation)

#define FASTLOSS_ROW_LOSSES(X) FASTLOSS_MULTICLASS_LOSSES(X) FASTLOSS_DISTILLATION_LOSSES(X) \
  FASTLOSS_LIKELIHOOD_ROW_LOSSES(X)

// Losses over query groups of a flat score vector (ragged rows of the row driver, RowJob::offsets),
// and the margin ranking loss on explicit pairs (one row per pair).
#define FASTLOSS_RANKING_LOSSES(X) \
  X(rank_net, RankNet)             \
  X(lambda_rank, LambdaRank)       \
  X(list_net, ListNet)             \
  X(list_mle, ListMLE)             \
  X(margin_ranking, MarginRanking)

// The kernel families and the ISAs they compile for are listed once, in CMakeLists.txt.
