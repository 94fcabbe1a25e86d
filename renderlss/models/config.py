"""Config schemas of the occupancy network and its losses.

Each section is a dataclass read by :func:`renderlss.configuration.from_dict`: an unknown key
is an error naming the nearest valid one, and ``validate`` rejects values that cannot work.
Channel counts that follow from another module (the neck's input channels, the depth net's
input channels, the 3D encoder's input channels) are not fields: the model takes them from
the module before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DepthBinMode = Literal["UD", "LID", "SID"]


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{where}: {message}")


@dataclass
class BackboneConfig:
    """ResNet image backbone with torchvision parameter names."""

    depth: Literal[18, 34, 50] = 50
    # Stages whose outputs are returned: 0..3 = layer1..layer4 (strides 4, 8, 16, 32).
    out_indices: tuple[int, ...] = (2, 3)
    # -1: train everything; 0: freeze the stem (conv1, bn1); i >= 1: stem and layer1..layer{i}.
    frozen_stages: int = -1
    # BatchNorm layers stay in eval mode with fixed affine and statistics.
    frozen_bn: bool = True
    # Local checkpoint (torchvision or BEVDet style) loaded into the backbone; "" for none.
    pretrained: str = ""

    def validate(self, where: str) -> None:
        _require(len(self.out_indices) > 0, f"{where}.out_indices", "at least one stage")
        _require(
            all(0 <= i <= 3 for i in self.out_indices)
            and list(self.out_indices) == sorted(set(self.out_indices)),
            f"{where}.out_indices",
            f"must be increasing stage indices in 0..3, got {self.out_indices}",
        )
        _require(
            -1 <= self.frozen_stages <= 4,
            f"{where}.frozen_stages",
            f"must be in -1..4, got {self.frozen_stages}",
        )


@dataclass
class NeckConfig:
    """FPN-style fusion of the backbone's last two returned stages into one feature map."""

    out_channels: int = 256
    # Stride of the fused map relative to the network input image.
    out_stride: Literal[8, 16, 32] = 16

    def validate(self, where: str) -> None:
        _require(self.out_channels > 0, f"{where}.out_channels", "must be positive")


@dataclass
class DepthBinsConfig:
    """``num_bins`` depth bins over ``[d_min, d_max]`` metres of camera z.

    UD: uniform widths; LID: widths growing linearly with the bin index; SID: log-uniform
    edges. The default is RenderOcc's uniform [1, 45] m at 0.5 m.
    """

    mode: DepthBinMode = "UD"
    d_min: float = 1.0
    d_max: float = 45.0
    num_bins: int = 88

    def validate(self, where: str) -> None:
        _require(self.num_bins >= 1, f"{where}.num_bins", f"must be >= 1, got {self.num_bins}")
        _require(
            self.d_max > self.d_min,
            where,
            f"d_max ({self.d_max}) must be greater than d_min ({self.d_min})",
        )
        _require(self.d_min >= 0.0, f"{where}.d_min", f"must be >= 0, got {self.d_min}")
        _require(
            self.mode != "SID" or self.d_min > 0.0,
            f"{where}.d_min",
            "must be > 0 for SID (log-uniform) bins",
        )


@dataclass
class DepthConfig:
    """Depth net: depth distribution over bins and context features per image cell."""

    bins: DepthBinsConfig = field(default_factory=DepthBinsConfig)
    mid_channels: int = 256
    context_channels: int = 32
    num_res_blocks: int = 2
    # Gate the depth features by an MLP of the normalised camera intrinsics.
    camera_aware: bool = False
    # Where a cell's context is lifted: "bins", at every bin centre weighted by the bin's
    # probability (LSS); "pdf", at pdf_samples depths drawn by inverse CDF from the cell's
    # depth distribution, each of mass 1 / pdf_samples (renderlss.models.frustum_sampling).
    sampling: Literal["bins", "pdf"] = "bins"
    pdf_samples: int = 32
    # Each cell lifts from a learned image offset of at most pixel_offset_range feature
    # cells per axis (zero-initialised head; renderlss.models.pixel_offsets).
    pixel_offsets: bool = False
    pixel_offset_range: float = 1.0

    def validate(self, where: str) -> None:
        _require(self.mid_channels > 0, f"{where}.mid_channels", "must be positive")
        _require(self.context_channels > 0, f"{where}.context_channels", "must be positive")
        _require(self.num_res_blocks >= 0, f"{where}.num_res_blocks", "must be >= 0")
        _require(
            self.sampling in ("bins", "pdf"),
            f"{where}.sampling",
            f"must be 'bins' or 'pdf', got {self.sampling!r}",
        )
        _require(
            self.pdf_samples >= 1, f"{where}.pdf_samples", f"must be >= 1, got {self.pdf_samples}"
        )
        _require(
            self.pixel_offset_range > 0.0,
            f"{where}.pixel_offset_range",
            f"must be positive, got {self.pixel_offset_range}",
        )


@dataclass
class Encoder3DConfig:
    """Residual 3D convolutions over the voxel volume at full resolution."""

    channels: int = 32
    num_blocks: int = 2

    def validate(self, where: str) -> None:
        _require(self.channels > 0, f"{where}.channels", "must be positive")
        _require(self.num_blocks >= 0, f"{where}.num_blocks", "must be >= 0")


@dataclass
class HeadConfig:
    """Per-voxel density and semantic logits, each through a small MLP over channels."""

    # Semantic classes including free: len(classes.occ_class_names) + 1 (18 for Occ3D).
    num_classes: int = 18
    hidden_channels: int = 64
    # Hidden layers of each MLP branch; 0 makes each branch a single linear map.
    num_hidden_layers: int = 1
    # Density (sigma per metre) of every voxel at initialisation, set through the output bias
    # of the density MLP; None keeps PyTorch's default init (sigma about 0.7 /m). A low value
    # lets the first rays reach the surfaces they are supervised with: at 0.7 /m a camera ray
    # has lost 99 % of its transmittance after 7 m, and a surface farther away gets no gradient.
    initial_density: float | None = None
    # The per-voxel density that occupancy is read from (evaluation thresholds it; the voxel
    # ray-query and 3D density losses supervise it): "centre", the stored value at the
    # voxel centre; "peak", the largest density the renderer meets inside the voxel (over
    # its 8 octant centres), so a voxel whose surface lies off its centre (a road surface in
    # the lower half of a voxel layer) counts as occupied as it renders.
    occupancy_field: Literal["centre", "peak"] = "centre"

    def validate(self, where: str) -> None:
        _require(self.num_classes >= 1, f"{where}.num_classes", "must be >= 1")
        _require(
            self.initial_density is None or self.initial_density > 0.0,
            f"{where}.initial_density",
            f"must be > 0 (or None), got {self.initial_density}",
        )
        _require(self.hidden_channels > 0, f"{where}.hidden_channels", "must be positive")
        _require(self.num_hidden_layers >= 0, f"{where}.num_hidden_layers", "must be >= 0")


@dataclass
class FieldDecoderConfig:
    """Hash-grid field decoder (Instant-NGP, docs/model.md): density and class logits at each
    ray sample (and voxel centre) from the voxel features trilinearly sampled there and a
    multiresolution hash encoding of the position, through one bias-free ReLU MLP."""

    # Off: the head decodes the voxels and the renderer interpolates its volumes.
    enabled: bool = False
    # L levels of F features; level l has N_min * b^l grid points per axis over the grid
    # box's longest side (isotropic), at most 2^log2_table_size table entries.
    levels: int = 8
    log2_table_size: int = 17
    features_per_level: int = 2
    base_resolution: int = 32
    per_level_scale: float = 1.5
    # Hidden layers and their width (tiny-cuda-nn's FullyFusedMLP: 16, 32, 64 or 128).
    mlp_width: int = 64
    mlp_hidden_layers: int = 1
    # "auto": tiny-cuda-nn for CUDA tensors when it imports, else PyTorch; "torch"; "tcnn"
    # (an error where tinycudann does not import). Both use the same parameters.
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    # Points decoded at once (bounds the working memory of inference on whole volumes).
    chunk_points: int = 262144

    def validate(self, where: str) -> None:
        _require(1 <= self.levels <= 32, f"{where}.levels", f"must be in 1..32, got {self.levels}")
        _require(
            4 <= self.log2_table_size <= 30,
            f"{where}.log2_table_size",
            f"must be in 4..30, got {self.log2_table_size}",
        )
        _require(
            self.features_per_level in (1, 2, 4, 8),
            f"{where}.features_per_level",
            f"must be 1, 2, 4 or 8 (tiny-cuda-nn's choices), got {self.features_per_level}",
        )
        _require(self.base_resolution >= 2, f"{where}.base_resolution", "must be >= 2")
        _require(self.per_level_scale >= 1.0, f"{where}.per_level_scale", "must be >= 1")
        _require(
            self.mlp_width in (16, 32, 64, 128),
            f"{where}.mlp_width",
            f"must be 16, 32, 64 or 128 (FullyFusedMLP's widths), got {self.mlp_width}",
        )
        _require(self.mlp_hidden_layers >= 1, f"{where}.mlp_hidden_layers", "must be >= 1")
        _require(self.chunk_points >= 1, f"{where}.chunk_points", "must be >= 1")


@dataclass
class LossConfig:
    """Weights and settings of every loss term (a weight of 0 turns a term off)."""

    # SILog on rendered depth, over rays with valid target depth.
    depth_weight: float = 1.0
    silog_lambda: float = 0.85
    # Rendered depth is clamped to at least this (metres) before its log.
    silog_min_depth: float = 1e-3
    # Cross-entropy on rendered semantics with class weights from class frequencies.
    semantic_weight: float = 1.0
    # Class counts (JSON written by tools/class_frequencies.py) the class weights come from;
    # "" weighs every class 1.
    class_counts: str = ""
    class_weighting: Literal["none", "exp", "inv_log"] = "exp"
    # exp: w_c = min(exp(alpha * (max_N / N_c - 1)), class_weight_max).
    class_weight_alpha: float = 0.005
    class_weight_max: float = 10.0
    # inv_log: w_c = 1 / ln(offset + N_c / sum(N)), bounded by 1 / ln(offset).
    inv_log_offset: float = 1.02
    # The class loss of the rendered-semantic and the Occ3D term: "ce" (class-weighted
    # cross-entropy) or "focal", -c_y (1 - p_t)^focal_gamma log p_t with the same class
    # weights c (focal_gamma = 0 is the weighted CE).
    semantic_loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = 2.0
    # Ray-termination loss (DS-NeRF): cross-entropy of the rendering weights against a
    # Gaussian kernel at the target depth, of standard deviation (termination_width +
    # termination_relative_width * t) / confidence metres along the ray.
    termination_weight: float = 0.0
    termination_width: float = 0.4
    termination_relative_width: float = 0.0
    # Ray-query losses: the volume is read at points along each target ray with depth;
    # query_free_points points in front of the surface (up to query_free_margin voxels before
    # it) are free, query_occupied_points points within query_occupied_depth voxels behind
    # it are occupied. query_weight: BCE of their occupancy probability 1 - exp(-sigma * L),
    # L = the smallest voxel edge; query_semantic_weight: class-weighted CE of their logits
    # against the ray's class (occupied points) and the free class (free points).
    query_weight: float = 0.0
    query_semantic_weight: float = 0.0
    query_free_points: int = 16
    query_occupied_points: int = 4
    query_free_margin: float = 1.0
    query_occupied_depth: float = 1.0
    # Where the points are read: "trilinear" interpolates the fields at the points, as the
    # renderer does; "voxel" labels the voxels holding the points (occupied wins, as in
    # Occ3D's labels) and supervises the voxels' occupancy density (model.head.occupancy_field),
    # the value that evaluation thresholds.
    query_sampling: Literal["trilinear", "voxel"] = "trilinear"
    # Regularisers on the per-ray rendering weights.
    distortion_weight: float = 0.01
    entropy_weight: float = 0.01
    # LSS depth supervision of the depth distribution from sparse LiDAR depth.
    lss_depth_weight: float = 0.05
    lss_depth_mode: Literal["bce", "ce"] = "bce"
    # Edge-aware depth supervision (EA-LSS, renderlss/models/depth_edges.py): a feature cell
    # is a depth edge when the valid target depths in it and in the depth_edge_radius cells
    # on each side span (max - min) / min > depth_edge_threshold (radius 0: the jumps inside
    # the cell, which the cell's one LSS target depth hides); the LSS depth loss weighs edge
    # cells depth_edge_weight times the others (1 = off), and with depth_edge_rendered the
    # rendered-depth (SILog) rays through edge cells as well.
    depth_edge_weight: float = 1.0
    depth_edge_threshold: float = 0.5
    depth_edge_radius: int = 0
    depth_edge_rendered: bool = False
    # Cross-entropy on Occ3D voxel labels (free class included).
    occ3d_weight: float = 0.0
    occ3d_use_camera_mask: bool = True
    # Voxel class counts (tools/class_frequencies.py --source occ) for the 3D loss's class
    # weights; "" weighs every class 1. Ray counts do not fit: rays never see free space.
    occ3d_class_counts: str = ""
    # BCE of the density's occupancy probability (as query_weight) against the Occ3D labels
    # (free vs any class), inside the camera mask when occ3d_use_camera_mask: the 3D loss
    # then trains the density that is rendered, not only the class logits.
    occ3d_density_weight: float = 0.0
    # Prior that space is empty: the mean occupancy probability 1 - exp(-sigma L) of the
    # occupancy density over all voxels. It clears the faint density that no ray supervises
    # (a haze in front of far surfaces stops rays early) and barely touches opaque voxels.
    emptiness_weight: float = 0.0

    def validate(self, where: str) -> None:
        for name in (
            "depth_weight",
            "semantic_weight",
            "distortion_weight",
            "entropy_weight",
            "lss_depth_weight",
            "occ3d_weight",
            "occ3d_density_weight",
            "emptiness_weight",
            "termination_weight",
            "termination_relative_width",
            "query_weight",
            "query_semantic_weight",
            "query_free_margin",
            "class_weight_alpha",
            "focal_gamma",
        ):
            value = getattr(self, name)
            _require(value >= 0.0, f"{where}.{name}", f"must be >= 0, got {value}")
        _require(0.0 <= self.silog_lambda <= 1.0, f"{where}.silog_lambda", "must be in [0, 1]")
        _require(self.silog_min_depth > 0.0, f"{where}.silog_min_depth", "must be positive")
        _require(self.class_weight_max >= 1.0, f"{where}.class_weight_max", "must be >= 1")
        _require(self.inv_log_offset > 1.0, f"{where}.inv_log_offset", "must be > 1")
        _require(self.termination_width > 0.0, f"{where}.termination_width", "must be positive")
        _require(
            self.query_occupied_depth > 0.0, f"{where}.query_occupied_depth", "must be positive"
        )
        for name in ("query_free_points", "query_occupied_points"):
            _require(getattr(self, name) >= 1, f"{where}.{name}", "must be >= 1")
        _require(self.depth_edge_weight > 0.0, f"{where}.depth_edge_weight", "must be positive")
        _require(
            self.depth_edge_threshold > 0.0, f"{where}.depth_edge_threshold", "must be positive"
        )
        _require(self.depth_edge_radius >= 0, f"{where}.depth_edge_radius", "must be >= 0")


@dataclass
class ModelConfig:
    """All network sections and the losses."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    encoder3d: Encoder3DConfig = field(default_factory=Encoder3DConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    field_decoder: FieldDecoderConfig = field(default_factory=FieldDecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # The splat's sorted segment sum: "torch" (renderlss.ops.splat) or "auto" (the compiled
    # kernel of cuda/ where installed or buildable, renderlss.ops.compiled; same values).
    splat_kernel: Literal["auto", "torch"] = "torch"
    # Image-side convolutions (backbone, neck, depth net) in channels_last memory format:
    # oneDNN's and cuDNN's faster layout for them. Same values up to float rounding.
    channels_last: bool = True
