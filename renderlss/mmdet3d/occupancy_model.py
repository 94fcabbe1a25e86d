"""``RenderLSSOccupancy``: the renderlss network and objective as an mmengine ``BaseModel``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet3d.registry import MODELS
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from renderlss.data.collate import collate
from renderlss.engine.build import build_model
from renderlss.engine.trainer import load_class_weights
from renderlss.mmdet3d.experiment import experiment_config
from renderlss.mmdet3d.render_head import prefixed_losses
from renderlss.models.objective import loss_terms
from renderlss.models.occupancy_net import predict_occupancy

# Occ3D label fields a data sample may carry ([X, Y, Z] each).
VOXEL_FIELDS = ("voxel_semantics", "mask_camera", "mask_lidar")


def renderlss_batch(
    inputs: dict[str, torch.Tensor | Sequence[torch.Tensor]],
    data_samples: Sequence[BaseDataElement] | None,
) -> dict:
    """The batch dict of :class:`renderlss.models.occupancy_net.OccupancyNet`.

    Args:
        inputs: ``img`` [B, N, 3, H, W], ``intrinsic`` / ``img_aug`` [B, N, 3, 3],
            ``cam2ego`` [B, N, 4, 4], each stacked or a list of B per-sample tensors
            (mmengine's ``pseudo_collate``).
        data_samples: B elements with ``targets`` (a data element of [R, ...] ray tensors),
            optionally ``query_targets`` (the same for the ray-query losses) and the
            :data:`VOXEL_FIELDS` they have, or None (inputs only).
    Returns:
        those fields stacked to [B, ...] (``targets`` per key) by renderlss's ``collate``.
    """
    size = len(inputs["img"])
    samples = []
    for i in range(size):
        sample = {name: values[i] for name, values in inputs.items()}
        if data_samples is not None:
            element = data_samples[i]
            sample["targets"] = dict(element.targets.items()) if "targets" in element else {}
            if "query_targets" in element:
                sample["query_targets"] = dict(element.query_targets.items())
            sample.update({name: element.get(name) for name in VOXEL_FIELDS if name in element})
        samples.append(sample)
    return collate(samples)


@MODELS.register_module()
class RenderLSSOccupancy(BaseModel):
    """Cameras -> LSS volume -> rendering -> the renderlss loss terms, or Occ3D labels.

    Args:
        experiment: renderlss config file or dict of sections (``data``: grid, classes,
            cameras; ``model``; ``render``; ``eval``: the occupancy rule of predictions).
        overrides: ``a.b=value`` strings on top of ``experiment``.
        data_preprocessor: mmengine's; the default moves inputs and samples to the device.
    """

    def __init__(
        self,
        experiment: str | dict | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor, init_cfg)
        self.config = experiment_config(experiment, overrides)
        self.net = build_model(self.config)
        self.class_weights = {
            "semantic": load_class_weights(self.config, "class_counts"),
            "occ3d": load_class_weights(self.config, "occ3d_class_counts"),
        }

    def forward(
        self,
        inputs: dict[str, torch.Tensor | Sequence[torch.Tensor]],
        data_samples: Sequence[BaseDataElement] | None = None,
        mode: str = "tensor",
    ) -> dict[str, torch.Tensor] | Sequence[BaseDataElement]:
        """mmengine's three modes.

        ``"loss"``: ``{loss_<term>: scalar}`` of :func:`renderlss.models.objective.loss_terms`
        (the samples need ``targets``, and the Occ3D fields for the 3D terms).
        ``"predict"``: the samples, each with ``pred_occupancy`` [X, Y, Z] int64 class
        indices (``eval.occupancy_rule``; free = K). ``"tensor"``: the volume predictions of
        :meth:`OccupancyNet.volume` (density, logits, occupancy_density, depth_logits).
        """
        batch = renderlss_batch(inputs, data_samples)
        if mode == "loss":
            return self.loss(batch)
        predictions = self.net.volume(batch)
        if mode == "tensor":
            return predictions
        if mode != "predict":
            raise ValueError(f"RenderLSSOccupancy: mode must be loss, predict or tensor: {mode!r}")
        labels = predict_occupancy(
            predictions["occupancy_density"],
            predictions["logits"],
            self.config.eval.density_threshold,
            self.config.data.classes.free_index,
        )
        for element, label in zip(data_samples, labels):
            element.pred_occupancy = label
        return data_samples

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """The weighted loss terms of a renderlss batch, named ``loss_<term>``."""
        predictions, rendered = self.net(batch)
        device = batch["img"].device
        weights = {
            term: None if w is None else w.to(device) for term, w in self.class_weights.items()
        }
        terms = loss_terms(
            predictions,
            rendered,
            batch,
            self.config.model,
            weights,
            self.config.data.classes.ignore_index,
            self.config.data.grid,
        )
        return prefixed_losses(terms)
