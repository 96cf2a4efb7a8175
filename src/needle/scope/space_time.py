"""The scope site's page of a ``space-time`` dataset: held-out entities on a map (or predicted years), the block
hold-out map (Table 4.3's predictions, block by block), R² by layer.

Computed from the cache with :mod:`needle.spacetime` (not from the results
rows: the map needs both coordinates of one entity on the same side of one
split, which a sweep's per-feature splits do not promise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

__all__ = ["PAGE", "space_time_page"]

PAGE = "space-time.html"


def space_time_page(env: Any, cache: Any, dataset: Any, meta: dict, root: Path, *, seed: int = 0,
                    blocks: int = 8) -> str | None:
    """The page's HTML (its figures written under ``root/space-time/``), or None when the dataset is not space-time."""
    if dataset is None or "space_time" not in getattr(dataset, "extra", {}):
        return None
    from needle.spacetime import (
        best_layer,
        block_column,
        block_holdout,
        entity_split,
        held_out_predictions,
        layer_scores,
        load_entities,
    )
    from needle.spacetime.figures import block_holdout_figure, r2_by_layer, world_scatter, year_scatter

    entities = load_entities(cache, dataset)
    is_test = entity_split(entities, seed=seed)
    scores = layer_scores(cache, entities, is_test, n_boot=200)
    layer = best_layer(scores)
    frame = held_out_predictions(cache, entities, is_test, layer)
    folder = root / "space-time"
    colour = next((c for c in ("continent", "country", "state", "borough", "entity_type") if c in frame), None)
    if entities.kind == "space":
        figure = world_scatter(frame, folder / "map.png", colour_by=colour, title=f"layer {layer}, held-out places")
        alt = "true and predicted positions of held-out places"
    else:
        figure = year_scatter(frame, entities.main_target, folder / "years.png", colour_by=colour,
                              title=f"layer {layer}, held-out entities")
        alt = "predicted against true years of held-out entities"
    block = None
    found = block_column(entities)
    if found is not None:  # the largest blocks only: each is a refit of the probes
        column, grid, label = found
        table, predictions = block_holdout(cache, entities, is_test, layer, column, grid_degrees=grid,
                                           max_blocks=blocks, predictions=True)
        if len(table):
            path = block_holdout_figure(predictions, folder / "blocks.png", blocks=blocks,
                                        title=f"block hold-out by {label}, layer {layer}")
            block = {"figure": f"space-time/{path.name}", "column": label, "n_blocks": len(table),
                     "nominal": float(table.nominal.mean()), "held_out": float(table.held_out.mean()),
                     "table": Markup(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0,
                                                   classes="data"))}
    layers_figure = r2_by_layer({entities.dataset: scores}, folder / "r2-by-layer.png",
                                title=f"ridge probe on {getattr(cache, 'site', 'the cache')}")
    table = scores.drop(columns=[c for c in scores.columns if scores[c].isna().all()])
    st = {"dataset": entities.dataset, "seed": seed, "layer": layer, "n_test": int(is_test.sum()),
          "figure": f"space-time/{Path(figure).name}", "figure_alt": alt,
          "layers_figure": f"space-time/{Path(layers_figure).name}", "block": block,
          "table": Markup(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0,
                                        classes="data"))}
    return env.get_template("space_time.html.j2").render(root="", meta=meta, st=st)
