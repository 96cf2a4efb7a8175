"""SAELens's folder format, read and written without importing ``sae-lens``.

A folder holds ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``, ``k`` for
TopK, ``apply_b_dec_to_input``, ``normalize_activations``, ``metadata``…) and
``sae_weights.safetensors`` (``W_enc`` (d_in, d_sae), ``b_enc``, ``W_dec``
(d_sae, d_in), ``b_dec``, and ``threshold`` — or an older ``log_threshold`` —
for JumpReLU). Configs older than SAELens 6 name the activation function in
``activation_fn_str`` (``relu``/``topk``) with ``k`` in ``activation_fn_kwargs``;
both spellings are read. Where ``sae-lens`` is installed, :func:`load_sae` also
takes a hub release (``release:sae_id``) and :func:`from_sae_lens` converts
one of its SAE objects.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from needle._io import atomic_directory, read_json
from needle.errors import FormatError, InputError
from needle.sae.autoencoder import SparseAutoencoder

__all__ = ["load_sae", "save_sae", "from_sae_lens", "CFG_FILE", "WEIGHTS_FILE"]

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
_REMEDY = "an SAE folder holds cfg.json and sae_weights.safetensors, as SAELens's save_model writes them"


def _architecture(cfg: dict[str, Any]) -> tuple[str, int | None]:
    architecture = cfg.get("architecture")
    activation = cfg.get("activation_fn_str") or cfg.get("activation_fn")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    k = cfg.get("k", kwargs.get("k"))
    if architecture in (None, "standard") and activation == "topk":
        architecture = "topk"
    if architecture is None:
        architecture = "standard"
    if architecture in ("standard", "topk", "jumprelu"):
        if architecture == "standard" and activation not in (None, "relu"):
            raise InputError(f"SAE activation function {activation!r} is not supported; needle reads relu, topk and "
                             "jumprelu SAEs.")
        return architecture, k
    raise InputError(f"SAE architecture {architecture!r} is not supported; needle reads standard (ReLU), topk and "
                     "jumprelu SAEs.")


def load_sae(path: str | os.PathLike, *, name: str | None = None) -> SparseAutoencoder:
    """Read an SAE saved in SAELens's folder format (or ``release:sae_id`` of a hub release, with sae-lens).

    Parameters
    ----------
    path : path-like or str
        The folder, or ``release:sae_id`` (needs ``sae-lens`` and internet).
    name : str, optional
        The transform's name (default derived from the weights).

    Returns
    -------
    SparseAutoencoder
    """
    folder = Path(path)
    if not folder.exists():
        text = str(path)
        if ":" in text and os.sep not in text.split(":", 1)[0]:
            return _from_release(*text.split(":", 1), name=name)
        raise InputError(f"--sae {path}: no such folder; {_REMEDY} (or give release:sae_id with sae-lens installed).")
    if not (folder / CFG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FormatError(f"{folder} is not an SAE folder: {_REMEDY}.")
    cfg = read_json(folder / CFG_FILE)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise FormatError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file ({exc}).") from None
    return _build(cfg, {key: np.asarray(value, np.float32) for key, value in weights.items()}, folder, name)


def _build(cfg: dict[str, Any], weights: dict[str, np.ndarray], where: Any, name: str | None) -> SparseAutoencoder:
    missing = [key for key in ("W_enc", "b_enc", "W_dec", "b_dec") if key not in weights]
    if missing:
        raise FormatError(f"{where}: the SAE weights lack {', '.join(missing)}.")
    architecture, k = _architecture(cfg)
    threshold = weights.get("threshold")
    if threshold is None and "log_threshold" in weights:
        threshold = np.exp(weights["log_threshold"])
    d_in, d_sae = weights["W_enc"].shape
    for key, want in (("d_in", d_in), ("d_sae", d_sae)):
        if key in cfg and int(cfg[key]) != want:
            raise FormatError(f"{where}: cfg.json says {key}={cfg[key]} but W_enc has shape {(d_in, d_sae)}.")
    if cfg.get("reshape_activations", "none") not in (None, "none"):
        raise InputError(f"{where}: reshape_activations={cfg['reshape_activations']!r} SAEs (hook_z) are not supported;"
                         " needle's attn.hook_z site is already flattened, so save the SAE without reshaping.")
    metadata = dict(cfg.get("metadata") or {})
    for key in ("hook_name", "model_name", "hook_layer", "hook_head_index"):  # SAELens < 6 kept these at the top
        if key in cfg and key not in metadata:
            metadata[key] = cfg[key]
    return SparseAutoencoder(weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"],
                             architecture=architecture, k=k, threshold=threshold,
                             apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True),
                             normalize_activations=cfg.get("normalize_activations") or "none",
                             rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
                             metadata=metadata, name=name)


def save_sae(sae: SparseAutoencoder, path: str | os.PathLike, *, overwrite: bool = False,
             extra_json: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` in SAELens's folder format (atomically); sae-lens's ``SAE.load_from_disk`` reads it.

    ``extra_json`` maps further file names (e.g. ``training_report.json``) to objects written beside; SAELens
    ignores them.

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.numpy import save_file

    weights = {"W_enc": sae.w_enc.numpy(), "b_enc": sae.b_enc.numpy(), "W_dec": sae.w_dec.numpy(),
               "b_dec": sae.b_dec.numpy()}
    if sae.threshold is not None:
        weights["threshold"] = sae.threshold.numpy()
    cfg: dict[str, Any] = {"architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
                           "device": "cpu", "apply_b_dec_to_input": sae.apply_b_dec_to_input,
                           "normalize_activations": sae.normalize_activations, "reshape_activations": "none",
                           "metadata": _jsonable(sae.metadata)}
    if sae.architecture == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=sae.rescale_acts_by_decoder_norm)
    import json

    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file({key: np.ascontiguousarray(value, np.float32) for key, value in weights.items()},
                  str(tmp / WEIGHTS_FILE))
        with open(tmp / CFG_FILE, "w", encoding="utf-8") as handle:
            json.dump(cfg, handle, indent=2)
        for file_name, obj in (extra_json or {}).items():
            with open(tmp / file_name, "w", encoding="utf-8") as handle:
                json.dump(_jsonable(obj), handle, indent=2)
    return Path(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def from_sae_lens(sae: Any, *, name: str | None = None) -> SparseAutoencoder:
    """Convert a loaded ``sae_lens`` SAE (``StandardSAE``, ``TopKSAE``, ``JumpReLUSAE``) to needle's."""
    cfg = sae.cfg.to_dict()
    weights = {key: value.detach().float().cpu().numpy() for key, value in sae.state_dict().items()}
    return _build(cfg, weights, type(sae).__name__, name)


def _from_release(release: str, sae_id: str, *, name: str | None) -> SparseAutoencoder:
    try:
        from sae_lens import SAE
    except ImportError:
        raise InputError(f"--sae {release}:{sae_id} names a hub release, which needs sae-lens "
                         "(pip install sae-lens) and internet; or give a local SAE folder.") from None
    loaded = SAE.from_pretrained(release, sae_id)
    return from_sae_lens(loaded[0] if isinstance(loaded, tuple) else loaded, name=name)
