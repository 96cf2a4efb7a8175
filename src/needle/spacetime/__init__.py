"""Space and time (thesis Chapter 4): metrics, hold-outs, space/time neurons and figures.

The datasets are the ``space-time`` collection (:mod:`needle.datasets.space_time`);
the probes are the sweep's ``ridge``, ``pca`` and ``mlp`` methods
(:mod:`needle.probing.layer_probes`). Modules, one job each:

- :mod:`~needle.spacetime.metrics` — great-circle error, R² on the sphere, proximity error;
- :mod:`~needle.spacetime.analysis` — per-layer scores, predictions, block and cross-entity hold-outs;
- :mod:`~needle.spacetime.neurons` — neurons aligned with a probe direction, and their ablation;
- :mod:`~needle.spacetime.figures` — maps, predicted-vs-true years, R² by layer.
"""

from needle.spacetime.analysis import (
    BLOCK_COLUMNS,
    Entities,
    best_layer,
    block_column,
    block_holdout,
    entity_split,
    fit_ridge,
    held_out_predictions,
    layer_scores,
    load_entities,
    paired_r2_difference,
)
from needle.spacetime.metrics import (
    EARTH_RADIUS_KM,
    great_circle_errors,
    haversine_km,
    proximity_error,
    proximity_error_bruteforce,
    sphere_r2,
)

__all__ = [
    "Entities",
    "load_entities",
    "entity_split",
    "fit_ridge",
    "layer_scores",
    "best_layer",
    "held_out_predictions",
    "paired_r2_difference",
    "block_holdout",
    "block_column",
    "BLOCK_COLUMNS",
    "EARTH_RADIUS_KM",
    "haversine_km",
    "great_circle_errors",
    "sphere_r2",
    "proximity_error",
    "proximity_error_bruteforce",
]
