"""``RenderLSSRenderHead``: any network's voxel volume rendered along a sample's rays and
scored by the renderlss loss terms (for BEVDet / FlashOcc / RenderOcc-style models that make
their own volume)."""

from __future__ import annotations

import torch
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule

from renderlss.configuration import ConfigError
from renderlss.engine.trainer import load_class_weights
from renderlss.mmdet3d.experiment import experiment_config
from renderlss.models.objective import loss_terms
from renderlss.ops.rays import Rays
from renderlss.ops.render import RenderOutput, render_rays

# Loss settings that read more than the volume and the rays, with the value that turns them
# off: the depth net's distribution (lss_depth, edge-aware weights of its feature cells) or
# the query points of OccupancyNet.query.
NEEDS_THE_NETWORK = dict(
    lss_depth_weight=0.0, query_weight=0.0, query_semantic_weight=0.0, depth_edge_weight=1.0
)


def prefixed_losses(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{term: value}`` as mmengine sums them: every key starts with ``loss_``."""
    return {f"loss_{name}": value for name, value in terms.items()}


@MODELS.register_module()
class RenderLSSRenderHead(BaseModule):
    """Volume rendering and the rendering losses of renderlss for a given volume.

    Args:
        experiment: renderlss config file or dict of sections (see
            :func:`renderlss.mmdet3d.experiment.experiment_config`); read are ``data.grid``
            (the volume's grid, key-ego frame), ``data.classes``, ``render`` and
            ``model.loss`` (with the settings of :data:`NEEDS_THE_NETWORK` off: the head sees
            no depth net and no query points).
        overrides: ``a.b=value`` strings on top of ``experiment``.
    """

    def __init__(
        self,
        experiment: str | dict | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.config = experiment_config(experiment, overrides)
        loss = self.config.model.loss
        for name, off in NEEDS_THE_NETWORK.items():
            if getattr(loss, name) != off:
                raise ConfigError(
                    f"RenderLSSRenderHead: model.loss.{name} must be {off} (the head renders "
                    "a given volume; RenderLSSOccupancy has the full objective)"
                )
        self.class_weights = {
            "semantic": load_class_weights(self.config, "class_counts"),
            "occ3d": load_class_weights(self.config, "occ3d_class_counts"),
        }

    def forward(
        self, density: torch.Tensor, logits: torch.Tensor, rays: dict[str, torch.Tensor]
    ) -> RenderOutput:
        """Render density [B, 1, X, Y, Z] (sigma >= 0 per metre) and logits [B, K, X, Y, Z]
        along ``rays`` (``origins`` / ``dirs`` [B, R, 3], ``z_per_t`` [B, R], key-ego frame):
        depth [B, R] (camera z), semantics [B, R, K], opacity, weights."""
        return render_rays(
            density,
            logits,
            Rays(rays["origins"], rays["dirs"], rays["z_per_t"]),
            self.config.data.grid,
            self.config.render,
            training=self.training,
        )

    def loss(
        self, density: torch.Tensor, logits: torch.Tensor, batch: dict
    ) -> dict[str, torch.Tensor]:
        """The weighted renderlss loss terms as ``loss_<term>`` scalars.

        Args:
            density, logits: as in :meth:`forward`.
            batch: ``targets`` (``origins``, ``dirs``, ``z_per_t``, ``depth``,
                ``semantics``, ``confidence`` [B, R]: :class:`AttachRenderTargets`) and,
                for the 3D terms, ``voxel_semantics`` / ``mask_camera`` [B, X, Y, Z].
        """
        rendered = self(density, logits, batch["targets"])
        predictions = dict(density=density, logits=logits, occupancy_density=density)
        terms = loss_terms(
            predictions,
            rendered,
            batch,
            self.config.model,
            self.class_weights,
            self.config.data.classes.ignore_index,
            self.config.data.grid,
        )
        return prefixed_losses(terms)
