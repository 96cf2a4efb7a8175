"""needle: find the neurons of transformer language models that encode features, by sparse probing."""

from needle._version import __version__

__all__ = ["__version__", "ProbeDataset", "load_dataset", "load_model", "extract", "load_cache"]


def __getattr__(name: str):
    # Heavy modules (numpy, pandas, torch, transformers) load only when asked for, so `needle --help` is quick.
    if name in ("ProbeDataset", "load_dataset"):
        from needle.datasets import format as _format

        return getattr(_format, name)
    if name == "load_model":
        from needle.models import load_model

        return load_model
    if name == "extract":
        from needle.activations import extract

        return extract
    if name == "load_cache":
        from needle.activations import load_cache

        return load_cache
    raise AttributeError(f"module 'needle' has no attribute {name!r}")
