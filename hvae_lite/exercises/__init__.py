"""Classroom exercises: a checker per exercise, giving instant feedback in plain words.

In a notebook: write the function, then run its check, e.g. `check_gaussian_kl(gaussian_kl)`.
Each checker prints and returns a `CheckResult(exercise, passed, message)` and never raises.
Reference answers are in `hvae_lite.exercises.reference`; `python -m hvae_lite.exercises generate`
builds the student notebooks from the solution notebooks.
"""
from .checks import (check_bernoulli_elbo, check_causal_mask, check_clustering_accuracy, check_free_bits_kl,
                     check_gaussian_kl, check_imputation_step, check_iwae_bound, check_merge_step,
                     check_reach_prediction, check_reparameterize, check_top_down_update)
from .feedback import CheckResult

# exercise (the function a student writes) -> its checker
CHECKERS = {
    "reparameterize": check_reparameterize,
    "gaussian_kl": check_gaussian_kl,
    "bernoulli_elbo": check_bernoulli_elbo,
    "iwae_bound": check_iwae_bound,
    "causal_mask": check_causal_mask,
    "top_down_update": check_top_down_update,
    "merge_step": check_merge_step,
    "clustering_accuracy": check_clustering_accuracy,
    "imputation_step": check_imputation_step,
    "free_bits_kl": check_free_bits_kl,
}

# predictions a student makes before an experiment (not functions) -> their checker
PREDICTION_CHECKERS = {
    "reach_prediction": check_reach_prediction,
}

__all__ = ["CHECKERS", "CheckResult", "PREDICTION_CHECKERS", *(checker.__name__ for checker in CHECKERS.values()),
           "check_reach_prediction"]
