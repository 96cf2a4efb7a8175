"""Sparse autoencoders: SAELens-format SAEs as a site transform, and a small trainer.

``extract(model, dataset, out, site="hook_resid_post", transform=load_sae(path))``
stores each labelled row's latents; everything downstream (probing, baselines,
reports) reads them as it reads neurons.
"""

from needle.sae.autoencoder import ARCHITECTURES, SparseAutoencoder, format_latent_id
from needle.sae.saelens_format import from_sae_lens, load_sae, save_sae
from needle.sae.stream import cache_activations, read_passages, text_activations
from needle.sae.train import evaluate_sae, train_sae

__all__ = ["ARCHITECTURES", "SparseAutoencoder", "format_latent_id", "load_sae", "save_sae", "from_sae_lens",
           "read_passages", "text_activations", "cache_activations", "train_sae", "evaluate_sae"]
