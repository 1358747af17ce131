"""Convert the official DynaST generator checkpoint (``latest_net_G.pth``) into dynast safetensors.

What the conversion does:
- reads the file safely (:func:`~dynast_cli.weights.io.safe_torch_load`) and checks it key for key
  and shape for shape against the official layout of the configuration it implies (ngf, max_multi, n_layers,
  pos_dim, prune_dim, semantic_nc and crop size are read off tensor shapes; ``top_k`` and ``smooth``
  are not stored in the file and default to the official 4 and 0.01);
- folds spectral norm: ``weight = weight_orig / (u . (W_mat v))`` with ``W_mat = weight_orig.reshape(out, -1)``,
  exactly what PyTorch's spectral norm computes in eval mode, and drops ``weight_u`` / ``weight_v``;
- drops ``embed_1.*`` (saved by the official code, never used by its forward);
- keeps the BatchNorm layers of the residual blocks as they are (their keys are part of the model's
  layout, training can continue from them; in eval mode they use the running statistics);
- writes safetensors with metadata ``architecture=dynast``, ``config`` (JSON) and ``source_sha256``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from dynast_cli.errors import WeightsError
from dynast_cli.io.outputs import check_output
from dynast_cli.models.dynast import ARCHITECTURE, DynastConfig, DynastGenerator
from dynast_cli.weights.io import check_finite, load_torch_checkpoint, save_weights, sha256_file

# convolutions wrapped in spectral norm by the official code (their folded weight is ``<prefix>.weight``)
SPECTRAL_NORM_WEIGHT = re.compile(r"^(encoder_(q|kv)\.layer[1-4]\.0|embed_\w+\.conv_[01])\.weight$")
UNUSED_PREFIX = "embed_1."


def infer_config(state: dict[str, torch.Tensor], source: str | Path, top_k: int = 4, smooth: float = 0.01) -> DynastConfig:
    """Read the architecture's sizes off the official checkpoint's tensor shapes."""
    needed = ["encoder_q.layer1.0.weight_orig", "encoder_q.layer4.0.weight_orig", "pos_embed", "pos_21.1.weight",
              "transformer_1.0.f_prune.weight"]
    for key in needed:
        if key not in state:
            raise WeightsError(f"is not an official DynaST generator checkpoint (no '{key}')", source)
    try:
        ngf, semantic_nc = state["encoder_q.layer1.0.weight_orig"].shape[:2]
        n_layers = len({k.split(".")[1] for k in state if k.startswith("transformer_4.")})
        return DynastConfig(
            ngf=int(ngf),
            max_multi=int(state["encoder_q.layer4.0.weight_orig"].shape[0] // ngf),
            n_layers=n_layers,
            top_k=top_k,
            smooth=smooth,
            pos_dim=int(state["pos_21.1.weight"].shape[0]),
            prune_dim=int(state["transformer_1.0.f_prune.weight"].shape[0]),
            semantic_nc=int(semantic_nc),
            crop_size=int(state["pos_embed"].shape[-1] * 8),
        )
    except (ValueError, IndexError, ZeroDivisionError, TypeError):  # a scalar or empty tensor where a conv belongs
        raise WeightsError(
            "is not an official DynaST generator checkpoint (its tensor shapes give no valid configuration)", source
        ) from None


def official_layout(config: DynastConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official ``latest_net_G.pth`` for ``config``."""
    with torch.device("meta"):
        ours = DynastGenerator(config).state_dict()
    ours.update({UNUSED_PREFIX + k[len("embed_q1."):]: t for k, t in ours.items() if k.startswith("embed_q1.")})
    layout: dict[str, tuple[int, ...]] = {}
    for key, t in ours.items():
        shape = tuple(t.shape)
        if SPECTRAL_NORM_WEIGHT.match(key):
            layout[key + "_orig"] = shape
            layout[key + "_u"] = (shape[0],)
            layout[key + "_v"] = (int(torch.Size(shape[1:]).numel()),)
        else:
            layout[key] = shape
    return layout


def check_layout(state: dict[str, torch.Tensor], config: DynastConfig, source: str | Path) -> None:
    """Raise WeightsError naming the file and the first key that is missing, unexpected or mis-shaped."""
    try:
        layout = official_layout(config)
    except (ValueError, RuntimeError, IndexError, ZeroDivisionError, TypeError, AssertionError):
        raise WeightsError(
            f"is not an official DynaST generator checkpoint (its tensor shapes give no valid configuration: {config})",
            source,
        ) from None
    for key, shape in layout.items():
        if key not in state:
            raise WeightsError(f"does not match the official DynaST layout: missing '{key}'", source)
        if tuple(state[key].shape) != shape:
            raise WeightsError(
                f"does not match the official DynaST layout: '{key}' has shape {tuple(state[key].shape)}, "
                f"expected {shape}",
                source,
            )
    for key in state:
        if key not in layout:
            raise WeightsError(f"does not match the official DynaST layout: unexpected '{key}'", source)


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The eval-mode spectral-normalised weight: weight_orig / (u . (W_mat v)), W_mat = weight_orig.reshape(out, -1)."""
    sigma = torch.dot(u, torch.mv(weight_orig.reshape(weight_orig.shape[0], -1), v))
    return weight_orig / sigma


def convert_dynast_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official layout (already checked) -> :class:`DynastGenerator` state dict."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, t in state.items():
        if key.startswith(UNUSED_PREFIX) or key.endswith(("weight_u", "weight_v")):
            continue
        if key.endswith("weight_orig"):
            prefix = key[: -len("_orig")]
            out[prefix] = fold_spectral_norm(t, state[prefix + "_u"], state[prefix + "_v"])
        else:
            # a shared PReLU is saved under two keys with one storage: safetensors wants separate copies
            out[key] = t.clone() if t.data_ptr() in seen else t
            seen.add(t.data_ptr())
    return out


def convert_dynast(
    pth_path: str | Path,
    out_path: str | Path,
    top_k: int = 4,
    smooth: float = 0.01,
    overwrite: bool = True,
) -> Path:
    """Convert ``latest_net_G.pth`` to a safetensors file loadable by :func:`dynast_cli.weights.build.build_model`."""
    out_path = check_output(out_path, overwrite)  # before the checkpoint is read: exists, folder unwritable
    state = load_torch_checkpoint(pth_path)
    config = infer_config(state, pth_path, top_k=top_k, smooth=smooth)
    check_layout(state, config, pth_path)
    tensors = convert_dynast_state(state)
    check_finite(tensors, pth_path, "after folding its spectral norm: a zero or degenerate weight_u/weight_v?")
    metadata = {
        "architecture": ARCHITECTURE,
        "config": config.to_json(),
        "source": Path(pth_path).name,
        "source_sha256": sha256_file(pth_path),
    }
    return save_weights(tensors, out_path, metadata)
