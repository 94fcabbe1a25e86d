"""Schema of the ``data = dict(...)`` section of an experiment config."""

from __future__ import annotations

from dataclasses import dataclass, field

from renderlss.data.classes import ClassesConfig
from renderlss.geometry.grid import VoxelGrid
from renderlss.targets.lidar import DEFAULT_EGO_BOX, DEFAULT_MIN_DEPTH

NUSCENES_CAMERAS = [
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
]

TARGET_SOURCE_NAMES = ["lidar", "dense_depth", "sam_labels", "oracle"]


def _check_range(where: str, name: str, bounds: tuple[float, float]) -> None:
    if bounds[0] > bounds[1]:
        raise ValueError(f"{where}.{name}: lower bound {bounds[0]} exceeds upper {bounds[1]}")


def _check_probability(where: str, name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}.{name}: probability {p} is not in [0, 1]")


@dataclass
class ImageAugConfig:
    """Image augmentation (train mode), composed as resize -> crop -> flip -> rotate.

    The resize factor is ``input_width / image_width + U(resize_range)``; the crop removes
    ``U(bottom_crop_range)`` of the resized height at the bottom, keeps ``input_size[0]``
    rows above that and a random horizontal window; eval mode uses the base factor, the mean
    bottom fraction and a centred window.
    """

    resize_range: tuple[float, float] = (-0.06, 0.11)
    bottom_crop_range: tuple[float, float] = (0.0, 0.22)
    flip_prob: float = 0.5
    rotate_range: tuple[float, float] = (-5.4, 5.4)  # degrees, counter-clockwise on screen

    def validate(self, where: str) -> None:
        _check_range(where, "resize_range", self.resize_range)
        _check_range(where, "bottom_crop_range", self.bottom_crop_range)
        _check_range(where, "rotate_range", self.rotate_range)
        _check_probability(where, "flip_prob", self.flip_prob)
        if not (0.0 <= self.bottom_crop_range[0] and self.bottom_crop_range[1] < 1.0):
            raise ValueError(f"{where}.bottom_crop_range: fractions must lie in [0, 1)")


@dataclass
class BevAugConfig:
    """BEV augmentation (train mode) of the key ego frame: rotation about ego z, then flips
    of x and y about the grid centre (so that they are voxel index flips)."""

    rotate_range: tuple[float, float] = (-22.5, 22.5)  # degrees
    flip_x_prob: float = 0.5
    flip_y_prob: float = 0.5

    def validate(self, where: str) -> None:
        _check_range(where, "rotate_range", self.rotate_range)
        _check_probability(where, "flip_x_prob", self.flip_x_prob)
        _check_probability(where, "flip_y_prob", self.flip_y_prob)


@dataclass
class TargetConfig:
    """Where render targets come from and how rays are drawn from them (the ``data.targets``
    section; see ``renderlss.data.render_targets``)."""

    # Target sources, combined as candidate rays: "lidar" (keyframe sweep + lidarseg: depth
    # and class), "dense_depth" (tools/make_dense_depth.py: depth only), "sam_labels"
    # (tools/make_sam_labels.py: class only), "oracle" (the synthetic world's exact depth and
    # class at every pixel, for diagnostics). Empty: samples carry no render targets.
    sources: list[str] = field(default_factory=list)
    dense_depth_dir: str = ""  # output folder of tools/make_dense_depth.py
    sam_labels_dir: str = ""  # output folder of tools/make_sam_labels.py
    sam_labels_stride: int = 4  # take every n-th pixel of the label images as candidates
    oracle_stride: int = 2  # take every n-th pixel (rows and columns) of the oracle images
    # Folder of the "oracle" source's <CAM>/<image stem>.npz maps (depth and semantics, the
    # layout of docs/formats.md), e.g. your own ground truth; default <dataroot>/oracle.
    oracle_dir: str = ""
    # Loss weight per source, multiplied into each target's confidence (default 1).
    source_weights: dict[str, float] = field(default_factory=dict)
    num_rays: int = 38400  # rays per sample after weighted sampling
    # Extra rays per sample for the ray-query losses alone (model.loss.query_*), drawn
    # uniformly among the candidates with depth, also those whose surface lies beyond the
    # grid (they still cross free space inside it); 0 = the query losses use the rendered
    # rays. Queries cost no rendering, so many more rays than are rendered can label the
    # volume at little cost (with query_sampling="voxel", about as many voxels as Occ3D's own
    # ray casting of the sweep labels).
    query_rays: int = 0
    adjacent_keyframes: int = 0  # k: also use rays of the +-k neighbouring keyframes
    adjacent_weight: float = 0.3  # sampling weight of adjacent-frame rays
    class_balance_alpha: float = 0.005  # w_c = exp(alpha * (max N / N_c - 1))
    # At most this share of a sample's rays may lack a class (dense depth pixels), so that
    # they cannot crowd out the class targets; 1 = no limit.
    max_unlabelled_share: float = 0.5
    min_depth: float = DEFAULT_MIN_DEPTH  # camera-z metres; nearer targets are dropped
    # Ego-vehicle body in the ego frame (x0, y0, z0, x1, y1, z1); LiDAR returns inside it
    # are dropped. The default covers a nuScenes-sized car with the rear axle at the origin.
    ego_box: tuple[float, float, float, float, float, float] = DEFAULT_EGO_BOX
    # LiDAR points the camera cannot see (the LiDAR sees over near cars) carry the depth of
    # what lies behind the car; they are dropped when, in at least lidar_hidden_min_sectors
    # of the four quadrants of the window of lidar_hidden_radius pixels (at an image 400 px
    # wide, scaled with the width) around them, a point is nearer than depth * (1 - margin).
    # 0 = keep every projected point (renderlss.targets.lidar.HiddenPointTest).
    lidar_hidden_radius: int = 0
    lidar_hidden_margin: float = 0.1
    lidar_hidden_min_sectors: int = 4

    def validate(self, where: str) -> None:
        if self.lidar_hidden_radius < 0 or not 1 <= self.lidar_hidden_min_sectors <= 4:
            raise ValueError(
                f"{where}: lidar_hidden_radius must be >= 0 and lidar_hidden_min_sectors "
                f"in 1..4, got {self.lidar_hidden_radius} and {self.lidar_hidden_min_sectors}"
            )
        if not 0.0 <= self.lidar_hidden_margin < 1.0:
            raise ValueError(f"{where}.lidar_hidden_margin: must be in [0, 1)")
        unknown = set(self.sources) - set(TARGET_SOURCE_NAMES)
        if unknown:
            raise ValueError(
                f"{where}.sources: unknown {sorted(unknown)}; known {TARGET_SOURCE_NAMES}"
            )
        for name, folder in (
            ("dense_depth", self.dense_depth_dir),
            ("sam_labels", self.sam_labels_dir),
        ):
            if name in self.sources and not folder:
                raise ValueError(f"{where}.{name}_dir: needed by the {name!r} source")
        unknown = set(self.source_weights) - set(self.sources)
        if unknown:
            raise ValueError(f"{where}.source_weights: {sorted(unknown)} are not in sources")
        if self.sam_labels_stride < 1 or self.oracle_stride < 1:
            raise ValueError(f"{where}: sam_labels_stride and oracle_stride must be >= 1")
        if not 0.0 <= self.max_unlabelled_share <= 1.0:
            raise ValueError(f"{where}.max_unlabelled_share: must be in [0, 1]")
        if self.num_rays <= 0 or self.adjacent_keyframes < 0 or self.query_rays < 0:
            raise ValueError(
                f"{where}: num_rays must be > 0, adjacent_keyframes and query_rays >= 0"
            )


@dataclass
class UnlabeledConfig:
    """Training on frames without labels next to the labeled keyframes (the
    ``data.unlabeled`` section; docs/data.md, "Unlabeled frames").

    Unlabeled samples keep their images, camera geometry and LiDAR depth; their Occ3D labels
    and every class target are replaced by the ignore index (masks all 0).
    """

    # Info files of non-keyframe camera frames (tools/create_data.py --unlabeled).
    infos: list[str] = field(default_factory=list)
    # Unlabeled samples per labeled sample in a batch: batch_size / (1 + ratio) must be a
    # whole number >= 1 (batch_size 2, ratio 1: 1 labeled + 1 unlabeled).
    ratio: float = 0.0
    # Share of the training scenes whose keyframes count as unlabeled (chosen by scene,
    # reproducibly from ``seed``); 0 keeps every keyframe labeled.
    keyframe_fraction: float = 0.0
    seed: int = 0

    @property
    def enabled(self) -> bool:
        """Whether training mixes labeled and unlabeled samples at all."""
        return bool(self.infos) or self.keyframe_fraction > 0

    def labeled_per_batch(self, batch_size: int) -> int:
        """Labeled samples in a batch of ``batch_size``: ``batch_size / (1 + ratio)``."""
        return round(batch_size / (1.0 + self.ratio))

    def validate(self, where: str) -> None:
        if self.ratio < 0:
            raise ValueError(f"{where}.ratio: must be >= 0, got {self.ratio}")
        if not 0.0 <= self.keyframe_fraction < 1.0:
            raise ValueError(
                f"{where}.keyframe_fraction: must be in [0, 1) (some scenes stay labeled), "
                f"got {self.keyframe_fraction}"
            )
        if self.infos and self.ratio == 0:
            raise ValueError(f"{where}.ratio: 0 would never read the unlabeled infos")


@dataclass
class DataConfig:
    """Where the data is, how a sample is built and how it is batched."""

    train_infos: str = ""
    val_infos: str = ""
    dataroot: str = ""  # overrides the dataroot recorded in the info files when set
    cameras: list[str] = field(default_factory=lambda: list(NUSCENES_CAMERAS))
    input_size: tuple[int, int] = (256, 704)  # (H, W) after augmentation
    image_aug: ImageAugConfig = field(default_factory=ImageAugConfig)
    bev_aug: BevAugConfig = field(default_factory=BevAugConfig)
    image_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0..255
    image_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # Training reads the Occ3D labels when a loss uses them (model.loss.occ3d_weight or
    # occ3d_density_weight > 0) and this is True; False with such a loss is an error.
    # Evaluation reads them whenever the info records name them (docs/data.md).
    load_occ: bool = True
    grid: VoxelGrid = field(default_factory=VoxelGrid)
    # The grid of the labels.npz files when it is not `grid`: it must contain `grid` at a
    # whole number of label voxels per model voxel and axis; labels are cropped to `grid`
    # and pooled (docs/formats.md). None: the labels are on `grid`.
    label_grid: VoxelGrid | None = None
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    unlabeled: UnlabeledConfig = field(default_factory=UnlabeledConfig)
    batch_size: int = 1
    workers: int = 4
    seed: int = 0

    @property
    def occ_label_grid(self) -> VoxelGrid:
        """The grid of the Occ3D label files: ``label_grid``, or ``grid`` when unset."""
        return self.grid if self.label_grid is None else self.label_grid

    def validate(self, where: str) -> None:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"{where}.cameras: need a non-empty list without repeats")
        if min(self.input_size) <= 0:
            raise ValueError(f"{where}.input_size: (H, W) must be positive, got {self.input_size}")
        if min(self.image_std) <= 0:
            raise ValueError(f"{where}.image_std: must be positive, got {self.image_std}")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError(f"{where}: batch_size >= 1 and workers >= 0 required")
        # Nested sections validate themselves when read from a config file; repeat it here for
        # configs built directly in Python.
        self.image_aug.validate(f"{where}.image_aug")
        self.bev_aug.validate(f"{where}.bev_aug")
        self.grid.validate(f"{where}.grid")
        if self.label_grid is not None:
            self.label_grid.validate(f"{where}.label_grid")
        self.classes.validate(f"{where}.classes")
        self.targets.validate(f"{where}.targets")
        self.unlabeled.validate(f"{where}.unlabeled")
        self._validate_mixing(where)
        if self.targets.sources and not self.classes.occ_class_names:
            raise ValueError(f"{where}.classes: render targets need the class list")

    def _validate_mixing(self, where: str) -> None:
        """The batch composition and target sources that ``data.unlabeled`` needs."""
        unlabeled = self.unlabeled
        if not unlabeled.enabled:
            return
        labeled = self.batch_size / (1.0 + unlabeled.ratio)
        if labeled < 1 or abs(labeled - round(labeled)) > 1e-9:
            raise ValueError(
                f"{where}.unlabeled.ratio: batch_size {self.batch_size} / (1 + {unlabeled.ratio})"
                " must be a whole number >= 1 of labeled samples per batch"
            )
        # Unlabeled samples take their depth from the LiDAR alone: the other sources are
        # keyframe files or carry classes.
        if self.targets.sources and "lidar" not in self.targets.sources:
            raise ValueError(
                f"{where}.targets.sources: unlabeled samples need the 'lidar' source for "
                f"their depth targets, got {self.targets.sources}"
            )
