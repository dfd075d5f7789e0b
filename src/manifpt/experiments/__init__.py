"""The paper's experiments on manifpt's embedded benchmark: ``run_experiments(["all"], cfg, out, data)``."""

from .config import ExperimentConfig, load_experiment_config
from .runner import ORDER, run_experiments
from .studies import STUDIES

__all__ = ["ORDER", "STUDIES", "ExperimentConfig", "load_experiment_config", "run_experiments"]
