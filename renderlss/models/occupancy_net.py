"""The assembled render-supervised LSS occupancy network.

images -> ResNet -> neck -> depth net (depth distribution + context) -> lift (frustum points
in the key-ego frame) -> splat into a [B, C, X, Y, Z] volume -> 3D encoder -> density and
semantic logits per voxel -> volume rendering along the sample's target rays.

The lift places each cell's context at the bin centres (``model.depth.sampling="bins"``) or
at depths drawn from its distribution (``"pdf"``, :mod:`renderlss.models.frustum_sampling`),
optionally from a learned offset of the cell's centre (``model.depth.pixel_offsets``,
:mod:`renderlss.models.pixel_offsets`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.profiler import record_function

from renderlss.geometry.grid import VoxelGrid
from renderlss.models.backbone import build_backbone
from renderlss.models.config import ModelConfig
from renderlss.models.depth_bins import bin_centers, bin_edges
from renderlss.models.depth_net import build_depth_net, camera_params, depth_distribution
from renderlss.models.encoder3d import build_encoder3d
from renderlss.models.field_decoder import FieldDecoder
from renderlss.models.frustum_sampling import pdf_samples
from renderlss.models.heads import build_head
from renderlss.models.neck import build_neck
from renderlss.models.pixel_offsets import PixelOffsetHead, sample_cells
from renderlss.models.ray_query import (
    entry_distance,
    query_points,
    ray_query_samples,
    voxel_labels_from_queries,
    voxel_peak_density,
)
from renderlss.ops.config import RenderConfig
from renderlss.ops.frustum import frustum_points
from renderlss.ops.rays import Rays
from renderlss.ops.render import RenderOutput, render_rays
from renderlss.ops.splat import splat_depth_context


class OccupancyNet(nn.Module):
    """Cameras in, a semantic density volume out, rendered back along rays.

    Args:
        config: the ``model`` section.
        grid: the voxel grid of the volume (key-ego frame).
        render: renderer parameters.
    """

    def __init__(self, config: ModelConfig, grid: VoxelGrid, render: RenderConfig) -> None:
        super().__init__()
        self.config = config
        self.grid = grid
        self.render_config = render
        self.backbone = build_backbone(config.backbone)
        self.neck = build_neck(config.neck, self.backbone.out_channels, self.backbone.out_strides)
        self.depth_net = build_depth_net(config.depth, config.neck.out_channels)
        self.pixel_offset_head = (
            PixelOffsetHead(config.neck.out_channels, config.depth.pixel_offset_range)
            if config.depth.pixel_offsets
            else None
        )
        self.encoder = build_encoder3d(config.encoder3d, config.depth.context_channels)
        # The field decoder, when on, decodes both the voxels and the ray samples: no head.
        decoder = config.field_decoder
        self.field_decoder = (
            FieldDecoder(
                decoder,
                config.encoder3d.channels,
                config.head.num_classes,
                grid,
                config.head.initial_density,
            )
            if decoder.enabled
            else None
        )
        self.head = None if decoder.enabled else build_head(config.head, config.encoder3d.channels)
        # Not a parameter and not saved: it follows from the config.
        if config.channels_last:
            for module in (self.backbone, self.neck, self.depth_net, self.pixel_offset_head):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        self.register_buffer("depth_centers", bin_centers(config.depth.bins), persistent=False)
        self.register_buffer("depth_edges", bin_edges(config.depth.bins), persistent=False)

    def volume(
        self, batch: dict, measured_depth: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-voxel predictions of a batch.

        Args:
            batch: ``img`` [B, N, 3, H, W], ``img_aug`` / ``intrinsic`` [B, N, 3, 3],
                ``cam2ego`` [B, N, 4, 4] (see docs/data.md).
            measured_depth: [B, N, H, W] sparse depth in the input images (0 = none) whose
                feature cells lift with a one-hot at the measured bin instead of the
                predicted distribution (:func:`depth_distribution`; the depth-aware
                teacher), or None.
        Returns:
            density [B, 1, X, Y, Z] (sigma >= 0 per metre), logits [B, K, X, Y, Z],
            occupancy_density [B, 1, X, Y, Z] (the density occupancy is read from,
            ``model.head.occupancy_field``), depth_logits [B*N, D, h, w]; with the field
            decoder also features [B, C, X, Y, Z], the encoder volume it decodes.
        """
        # Named ranges: the stages of tools/benchmark.py --profile.
        with record_function("backbone"):
            images = batch["img"].flatten(0, 1)
            if self.config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            features = self.backbone(images)
        with record_function("neck"):
            features = self.neck(features)
        volume, depth_logits = self.lift(features, batch, measured_depth)
        with record_function("encoder3d"):
            encoded = self.encoder(volume)
        with record_function("heads"):
            if self.field_decoder is None:
                density, logits = self.head(encoded)
            else:
                density, logits = self.field_decoder.decode_volume(encoded)
        occupancy = (
            voxel_peak_density(density) if self.config.head.occupancy_field == "peak" else density
        )
        predictions = dict(
            density=density,
            logits=logits,
            occupancy_density=occupancy,
            depth_logits=depth_logits,
        )
        if self.field_decoder is not None:
            predictions["features"] = encoded
        return predictions

    def lift(
        self, features: torch.Tensor, batch: dict, measured_depth: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lift and splat the neck features of every camera into the voxel volume.

        Args:
            features: [B*N, C_neck, h, w] neck output; batch, measured_depth: as in
                :meth:`volume`.
        Returns:
            volume [B, C_ctx, X, Y, Z] and depth_logits [B*N, D, h, w] (of the cells
            themselves, whatever offsets the lift read them at).
        """
        b, n = batch["img"].shape[:2]
        size = tuple(features.shape[-2:])
        stride = self.config.neck.out_stride
        cam = None
        if self.config.depth.camera_aware:
            cam = camera_params((batch["img_aug"] @ batch["intrinsic"]).flatten(0, 1), stride, size)
        with record_function("depth_net"):
            depth_logits, context = self.depth_net(features, cam)
        depth = depth_distribution(
            depth_logits,
            None if measured_depth is None else measured_depth.flatten(0, 1),
            self.config.depth.bins,
            stride,
        )
        pixel_offsets = None
        if self.pixel_offset_head is not None:
            offsets = self.pixel_offset_head(features)  # [B*N, h, w, 2] feature cells
            depth, context = sample_cells(depth, offsets), sample_cells(context, offsets)
            # The rays move with the content; their positions carry no gradient (floor splat).
            pixel_offsets = (offsets.detach() * stride).unflatten(0, (b, n))
        depths, weights = self.depth_centers, depth
        if self.config.depth.sampling == "pdf":
            depths, weights = pdf_samples(
                depth, self.depth_edges, self.config.depth.pdf_samples, stratified=self.training
            )
            depths = depths.unflatten(0, (b, n))
        points = frustum_points(
            depths,
            size,
            stride,
            batch["img_aug"],
            batch["intrinsic"],
            batch["cam2ego"],
            pixel_offsets,
        )
        with record_function("splat"):
            volume = splat_depth_context(
                weights.unflatten(0, (b, n)),
                context.unflatten(0, (b, n)),
                points,
                self.grid,
                kernel=self.config.splat_kernel,
            )
        return volume, depth_logits

    def render(
        self, predictions: dict[str, torch.Tensor], rays: dict[str, torch.Tensor]
    ) -> RenderOutput:
        """Render the predicted volume along rays ``origins``/``dirs`` [B, R, 3] and
        ``z_per_t`` [B, R] (the ``targets`` of a batch); with the field decoder, the decoder
        itself at every sample (``predictions["features"]``)."""
        volumes = predictions["density"], predictions["logits"]
        fields = None
        if self.field_decoder is not None:
            features = predictions["features"]
            fields = [self.field_decoder.field(features[b : b + 1]) for b in range(len(features))]
            volumes = None, None
        with record_function("render"):
            return render_rays(
                *volumes,
                Rays(rays["origins"], rays["dirs"], rays["z_per_t"]),
                self.grid,
                self.render_config,
                training=self.training,
                field=fields,
            )

    def query(
        self, predictions: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The volume at free and occupied query points along the target rays with depth
        (``model.loss.query_*``; see :mod:`renderlss.models.ray_query`).

        Returns:
            trilinear sampling: free_density [B, R, F], free_valid [B, R, F],
            occupied_density [B, R, O], occupied_valid [B, R, O] and, for the semantic term,
            free_logits [B, R, F, K] and occupied_logits [B, R, O, K];
            voxel sampling: voxel_state [B, X, Y, Z] (0 unknown, 1 free, 2 occupied) and
            voxel_class [B, X, Y, Z].
        """
        loss = self.config.loss
        voxel = float(min(self.grid.voxel_size))
        origins, dirs = targets["origins"].float(), targets["dirs"].float()
        t_target = targets["depth"].float() / targets["z_per_t"].float()
        points = query_points(
            entry_distance(origins, dirs, self.grid, self.render_config.near),
            t_target,
            loss.query_free_points,
            loss.query_occupied_points,
            loss.query_free_margin * voxel,
            loss.query_occupied_depth * voxel,
            jitter=self.training,
        )
        if loss.query_sampling == "voxel":
            state, cls = voxel_labels_from_queries(
                origins, dirs, points, targets["semantics"].long(), self.grid
            )
            return dict(voxel_state=state, voxel_class=cls)
        logits = predictions["logits"] if loss.query_semantic_weight else None
        out = {}
        for part, t, valid in (
            ("free", points.t_free, points.free_valid),
            ("occupied", points.t_occupied, points.occupied_valid),
        ):
            sigma, values, inside = ray_query_samples(
                predictions["density"], logits, origins, dirs, t, self.grid
            )
            out[f"{part}_density"] = sigma
            out[f"{part}_valid"] = valid & inside
            if values is not None:
                out[f"{part}_logits"] = values
        return out

    def forward(self, batch: dict) -> tuple[dict[str, torch.Tensor], RenderOutput]:
        """Volume predictions and their rendering along the batch's target rays (with the
        ray-query samples under ``predictions["queries"]`` when a query loss is on, along
        ``batch["query_targets"]`` where the batch has them, else along the target rays)."""
        predictions = self.volume(batch)
        loss = self.config.loss
        if loss.query_weight or loss.query_semantic_weight:
            query_rays = batch.get("query_targets", batch["targets"])
            predictions["queries"] = self.query(predictions, query_rays)
        return predictions, self.render(predictions, batch["targets"])


def predict_occupancy(
    density: torch.Tensor, logits: torch.Tensor, threshold: float | None, free_index: int
) -> torch.Tensor:
    """Occ3D-style labels.

    With a ``threshold``: ``free_index`` where density <= threshold, else the most likely
    non-free class (networks trained by rendering, whose density decides geometry). With
    None: the most likely class including free (networks trained with the 3D loss).

    Args:
        density: [B, 1, X, Y, Z], the occupancy density (``occupancy_density`` of
            :meth:`OccupancyNet.volume`); logits: [B, K, X, Y, Z] with the free class at
            ``free_index``.
    Returns:
        [B, X, Y, Z] int64 class indices.
    """
    if threshold is None:
        return logits.argmax(dim=1)
    occupied_logits = torch.cat([logits[:, :free_index], logits[:, free_index + 1 :]], dim=1)
    cls = occupied_logits.argmax(dim=1)
    cls = torch.where(cls >= free_index, cls + 1, cls)
    return torch.where(density[:, 0] > threshold, cls, torch.full_like(cls, free_index))
