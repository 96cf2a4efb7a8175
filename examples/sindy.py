"""Dynamics inside a language model (thesis §5.4): probe a toy model trained on logistic-map strings.

    needle toy train --out runs/dyn-toy --dynamics logistic --cpu-minutes 2 --hidden-size 64 --layers 2 \\
        --heads 2 --neurons 256 --vocab-size 300
    python examples/sindy.py runs/dyn-toy

Prints, per layer, the ridge probe's test R²/MSE/MAE for the current and next value at the separators
(trajectories the model never trained on: data seed 1; later steps as test), and the 2-term map
x_{t+1} = a x + b x² recovered from the probe's own predictions (truth: a = r, b = -r).
"""

import sys

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer

from needle.datasets.dynamics import build_dynamics, logistic_trajectories
from needle.sindy.lm import logistic_map_fit, probe_layers, separator_states

model_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/dyn-toy"
model = AutoModelForCausalLM.from_pretrained(model_dir)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
N, LENGTH = 60, 40
ds = build_dynamics(None, tokenizer, n_trajectories=N, length=LENGTH, seed=1, train_fraction=0.5)
_, r = logistic_trajectories(N, LENGTH, seed=1)
for feature in ("current", "next"):
    states, y, split = separator_states(model, ds, feature)
    f = [x["name"] for x in ds.features].index(feature)
    seq = ds.examples.sequence[ds.examples.feature == f][split == 1]
    for row in probe_layers(states, y, split):
        line = (f"{feature:8s} layer {row['layer']}: R2 {row['r2']:.3f}  MSE {row['mse']:.4f}  "
                f"MAE {row['mae']:.4f}  (n_test {row['n_test']})")
        if feature == "current" and np.isfinite(row["r2"]):
            # one map per trajectory from its probe-predicted series; error of r against the truth
            errs = []
            for s in np.unique(seq):
                p = row["prediction"][seq == s]
                xi = logistic_map_fit(p[:-1], p[1:], k=2)
                errs.append(abs(xi[1] - r[s]) / r[s])
            errs = np.array(errs)
            line += f"  |a-r|/r median {np.median(errs):.3f} (n={len(errs)} trajectories)"
        print(line)
