"""Experiments: the typed schema, one module per stage (its key fields, cost and executor), the registry and runner.

    from visual_priors import experiment
    config = experiment.base_config()             # or experiment.get_experiment("mix/mix6", ["seed=1"])
    experiment.stage_identities(experiment.finalize(config))

The package's light public API is re-exported here (schema, overrides, the local recipe, the stage graph, the
registry); the runner (`experiment.runner`), the grid and cost estimates import the training library and are
imported by their module paths.
"""

from visual_priors.experiment.graph import STAGES, StageIdentity, canonical, fingerprint, run_id, slug, stage_identities
from visual_priors.experiment.local import LOCAL_SETTINGS, apply_local
from visual_priors.experiment.registry import experiment_names, family_of, get_experiment, parse_arg
from visual_priors.experiment.schema import (FAMILIES, MLE_BENCHMARKS, apply_overrides, base_config, benchmark_names,
                                             decoder_config, decoder_params, finalize, generated_tasks,
                                             missing_files, mixture_meta, param_count, parse_mixture, set_field,
                                             sft_variant, validate)

__all__ = [
    "FAMILIES", "LOCAL_SETTINGS", "MLE_BENCHMARKS", "STAGES", "StageIdentity", "apply_local", "apply_overrides",
    "base_config", "benchmark_names", "canonical", "decoder_config", "decoder_params", "experiment_names",
    "family_of", "finalize", "fingerprint", "generated_tasks", "get_experiment", "missing_files", "mixture_meta",
    "param_count", "parse_arg", "parse_mixture", "run_id", "set_field", "sft_variant", "slug", "stage_identities",
    "validate",
]
