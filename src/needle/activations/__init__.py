"""Activations: extraction from a model over a ProbeDataset, and the on-disk ActivationCache."""

from needle.activations.cache import ActivationCache, load_cache, verify_cache
from needle.activations.extract import extract
from needle.activations.stream import plan_batches

__all__ = ["ActivationCache", "extract", "load_cache", "plan_batches", "verify_cache"]
