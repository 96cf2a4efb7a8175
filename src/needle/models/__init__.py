"""Models: loading by name, and per-architecture adapters that know where the neurons are."""

from needle.models.base import ModelAdapter
from needle.models.families import ADAPTERS, BertAdapter, GatedMLPAdapter, GPT2Adapter, GPTNeoXAdapter
from needle.models.loading import (
                                   ALIASES,
                                   DEFAULT_MODEL,
                                   adapt,
                                   adapter_class,
                                   load_model,
                                   load_tokenizer,
                                   resolve_model,
                                   supported_model_types,
                                   weights_fingerprint,
)
from needle.models.sites import ALIASES as SITE_ALIASES
from needle.models.sites import SITES, LinearMap, Site, Transform, get_site, normalize_site, site_hook_name, site_id

__all__ = [
    "ADAPTERS",
    "ALIASES",
    "DEFAULT_MODEL",
    "SITES",
    "SITE_ALIASES",
    "LinearMap",
    "Site",
    "Transform",
    "get_site",
    "BertAdapter",
    "GPT2Adapter",
    "GPTNeoXAdapter",
    "GatedMLPAdapter",
    "ModelAdapter",
    "adapt",
    "adapter_class",
    "load_model",
    "load_tokenizer",
    "normalize_site",
    "resolve_model",
    "site_hook_name",
    "site_id",
    "supported_model_types",
    "weights_fingerprint",
]
