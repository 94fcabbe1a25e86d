"""Loading a backbone's weights from a local checkpoint file (never downloaded).

Accepted files: a bare state dict (torchvision's ``resnet50-*.pth``), or a dict holding one
under ``state_dict`` (mmcv/BEVDet) or ``model``. Keys may carry a prefix such as
``img_backbone.`` (BEVDet) or ``module.`` (DataParallel): the known prefix that matches the
most of the module's keys is stripped, and keys outside it (the rest of a detector) are
skipped and counted. A classifier (``fc.*``) the module does not have is skipped too.
Everything else that does not fit is reported by name: missing keys, unexpected keys, and
shape mismatches (always an error).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

KNOWN_PREFIXES: tuple[str, ...] = (
    "module.img_backbone.",
    "img_backbone.",
    "module.backbone.",
    "backbone.",
    "module.",
)
# Keys a checkpoint may lack without harm: BatchNorm restarts its counter at 0.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
CLASSIFIER_PREFIX = "fc."


class WeightsFileError(ValueError):
    """A pretrained weights file that does not fit the module it is loaded into (the
    training checkpoints of a run raise ``renderlss.train.checkpoint.CheckpointError``)."""


@dataclass
class LoadReport:
    """What a load did: keys loaded, missing, unexpected, and skipped as not the backbone's."""

    path: str
    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: int = 0

    def summary(self) -> str:
        """One line for the log."""
        text = (
            f"{self.path}: loaded {len(self.loaded)} tensors (prefix {self.prefix!r}), "
            f"skipped {self.skipped} keys of other modules"
        )
        if self.missing:
            text += f"; missing {len(self.missing)}: {_preview(self.missing)}"
        if self.unexpected:
            text += f"; unexpected {len(self.unexpected)}: {_preview(self.unexpected)}"
        return text


def _preview(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, from its top level, ``state_dict`` or ``model``.

    Args:
        path: local ``.pth``/``.pt`` file.
        trusted: unpickle arbitrary objects (``weights_only=False``); only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        raise WeightsFileError(
            f"{path}: holds objects beyond tensors and plain containers, so it was not "
            "unpickled. If you trust the file, pass trusted=True, or re-save just its tensors: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], new_path)"
        ) from err
    if isinstance(checkpoint, Mapping):
        for container in ("state_dict", "model"):
            if isinstance(checkpoint.get(container), Mapping):
                checkpoint = checkpoint[container]
                break
    if not isinstance(checkpoint, Mapping):
        raise WeightsFileError(f"{path}: expected a dict of tensors, got {type(checkpoint)}")
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsFileError(f"{path}: no tensors at the top level, in 'state_dict' or 'model'")
    return tensors


def _best_prefix(keys: Sequence[str], module_keys: set[str], prefixes: Sequence[str]) -> str:
    """The prefix (or "") under which the most checkpoint keys name a module key."""

    def matches(prefix: str) -> int:
        return sum(k.startswith(prefix) and k[len(prefix) :] in module_keys for k in keys)

    return max(["", *prefixes], key=matches)


def load_backbone_weights(
    module: nn.Module,
    path: str | Path,
    prefixes: Sequence[str] = KNOWN_PREFIXES,
    strict: bool = True,
    trusted: bool = False,
) -> LoadReport:
    """Copy a local checkpoint's tensors into ``module``.

    Args:
        module: the backbone (its ``state_dict`` keys are the targets).
        path: checkpoint file.
        prefixes: candidate key prefixes to strip; the best-matching one is used.
        strict: raise on missing or unexpected keys (shape mismatches always raise).
        trusted: see :func:`read_state_dict`.
    Returns:
        the :class:`LoadReport`.
    """
    state = read_state_dict(path, trusted=trusted)
    target = module.state_dict()
    has_classifier = any(k.startswith(CLASSIFIER_PREFIX) for k in target)
    prefix = _best_prefix(list(state), set(target), prefixes)
    report = LoadReport(path=str(path), prefix=prefix)

    selected: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is None or (name.startswith(CLASSIFIER_PREFIX) and not has_classifier):
            report.skipped += 1
        elif name not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[name].shape):
            raise WeightsFileError(
                f"{path}: {key} has shape {tuple(value.shape)}, the module's {name} has "
                f"{tuple(target[name].shape)} (wrong ResNet depth?)"
            )
        else:
            selected[name] = value
    report.loaded = sorted(selected)
    report.missing = sorted(
        k for k in target if k not in selected and not k.endswith(OPTIONAL_SUFFIXES)
    )
    if not selected:
        raise WeightsFileError(
            f"{path}: none of its {len(state)} keys name a backbone parameter (tried prefixes "
            f"{list(prefixes)}); first keys: {_preview(list(state), 5)}"
        )
    if strict and (report.missing or report.unexpected):
        raise WeightsFileError(f"strict load failed: {report.summary()}")
    module.load_state_dict(selected, strict=False)
    return report
