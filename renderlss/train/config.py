"""Schema of the ``train = dict(...)`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

VoxelRegion = Literal["frustum", "surface", "measured"]
VOXEL_REGIONS = get_args(VoxelRegion)


@dataclass
class TeacherConfig:
    """The depth-aware EMA teacher-student loop (``train.teacher``; docs/teacher_student.md).

    The EMA of the student is the teacher: it renders pseudo depth and semantics along the
    student's rays of the batch's unlabeled samples (``batch["labeled"]`` False) from the
    un-jittered images, and the student, which sees those images photometrically jittered,
    learns them. Its momentum follows ``EmaMomentum(momentum_warm_steps, max_momentum)``.

    Buffers (BatchNorm running statistics): ``"copy"`` takes the student's after every
    update, as the evaluation EMA does. The teacher only ever runs in eval mode, so it has
    no statistics of its own to keep, and its weights, an average of the last ~1 / (1 - m)
    student steps, sit close to the student's current ones that the statistics describe.
    ``"average"`` moves the statistics by the same EMA as the weights (smoother, but they
    then lag the weights they normalise for). Either way the teacher's buffers are rank 0's
    in a distributed run, so every rank holds the same teacher.
    """

    enabled: bool = False
    momentum_warm_steps: int = 100  # EmaMomentum.warm
    max_momentum: float = 0.999
    buffers: Literal["copy", "average"] = "copy"
    start_step: int = 0  # no pseudo loss (and no teacher forward) before this step
    ramp_steps: int = 0  # pseudo weights grow linearly from 0 to full over these steps
    # A ray is pseudo-labelled when the teacher's class probability (softmax of its
    # rendered semantics) reaches confidence_threshold, its opacity opacity_threshold and
    # its class is not free (a ray ends on a surface).
    confidence_threshold: float = 0.9
    opacity_threshold: float = 0.9
    pseudo_depth_weight: float = 1.0  # SILog of the student's rendered depth
    pseudo_semantic_weight: float = 1.0  # CE of the student's rendered semantics
    # 3D pseudo labels: the teacher's voxel class where its probability reaches
    # voxel_confidence_threshold, inside voxel_region: "frustum", every voxel the cameras'
    # frustums reach (occluded space included); "surface", only the voxels in front of and
    # at each feature cell's lifted surface (its median depth bin, the measured one where
    # depth-aware), which is where the labeled frames' 3D loss reads (Occ3D's camera mask);
    # "measured", only the voxels the unlabeled frame's LiDAR rays end in (the ray-query
    # term's occupied voxels; needs ray_depth_on_unlabeled and model.loss.query_sampling
    # "voxel"), where the teacher's class is not free: the LiDAR says where, the teacher
    # what, for 2D-only training, whose 3D classes come from the ray-query term alone.
    pseudo_voxel_weight: float = 0.0
    voxel_confidence_threshold: float = 0.9
    voxel_region: VoxelRegion = "frustum"
    # Measured LiDAR depth of unlabeled frames: the depth target of its rays, and a one-hot
    # depth distribution in the teacher's lift at the feature cells that hold a point.
    depth_aware: bool = True
    # Unlabeled frames keep their LiDAR depth map (targets.image_depth) as the target of the
    # student's lifting-depth term (lss_depth): a measurement, not a label, on frames whose
    # geometry the strong view leaves unchanged.
    lifting_depth_on_unlabeled: bool = False
    # Unlabeled frames keep the LiDAR depth of their rays (targets.depth and
    # query_targets.depth), so the rendered-depth and ray-query terms read them: what 2D-only
    # training learns from a frame without lidarseg. Their classes stay removed; the ray-query
    # points before a measured surface still teach the free class.
    ray_depth_on_unlabeled: bool = False
    # Strong view of the student: factors drawn uniformly from [1 - s, 1 + s] per image.
    jitter_brightness: float = 0.3
    jitter_contrast: float = 0.3
    jitter_saturation: float = 0.3

    def validate(self, where: str) -> None:
        if self.momentum_warm_steps < 0 or not 0 <= self.max_momentum < 1:
            raise ValueError(
                f"{where}: momentum_warm_steps >= 0 and max_momentum in [0, 1) required"
            )
        if self.start_step < 0 or self.ramp_steps < 0:
            raise ValueError(f"{where}: start_step and ramp_steps must be >= 0")
        for name in ("confidence_threshold", "opacity_threshold", "voxel_confidence_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{where}.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.voxel_region not in VOXEL_REGIONS:
            raise ValueError(
                f"{where}.voxel_region: must be one of {VOXEL_REGIONS}, got {self.voxel_region!r}"
            )
        if self.voxel_region == "measured" and not self.ray_depth_on_unlabeled:
            raise ValueError(
                f"{where}.voxel_region='measured' reads the unlabeled frames' LiDAR rays: "
                "set ray_depth_on_unlabeled=True"
            )
        for name in ("pseudo_depth_weight", "pseudo_semantic_weight", "pseudo_voxel_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("jitter_brightness", "jitter_contrast", "jitter_saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{where}.{name}: must be in [0, 1), got {getattr(self, name)}")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of a training run."""

    work_dir: str = "work_dirs/run"
    max_steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100  # linear warm-up from 0, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    grad_clip: float = 35.0  # max gradient norm; 0 disables clipping
    log_interval: int = 10
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    accumulate_steps: int = 1  # micro-batches per optimizer step
    amp: bool = True  # fp16 autocast + gradient scaling on CUDA (rendering weights stay fp32)
    checkpoint_interval: int = 500  # steps between checkpoints (and one at the end)
    keep_last: int = 3  # checkpoints kept in work_dir; older ones are deleted
    max_consecutive_nan: int = 5  # non-finite steps in a row that stop the run
    image_interval: int = 500  # steps between TensorBoard image panels; 0 disables
    eval_interval: int = 0  # steps between evaluations on data.val_infos; 0 disables
    ema: bool = False  # keep an EMA teacher of the model (saved in checkpoints)
    ema_warm: int = 100  # EMA momentum min(ema_max_momentum, 1 - (1 + warm) / (step + 1 + warm))
    ema_max_momentum: float = 0.999
    dist_timeout_s: float = 600.0  # a collective fails when a rank is silent this long
    threads: int = 0  # torch CPU threads per process; 0: chosen (see docs/training.md)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def validate(self, where: str) -> None:
        if self.max_steps < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"{where}: max_steps >= 1, lr > 0 and warmup_steps >= 0 required")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"{where}.min_lr_ratio: must be in [0, 1]")
        if self.grad_clip < 0 or self.log_interval < 1:
            raise ValueError(f"{where}: grad_clip >= 0 and log_interval >= 1 required")
        if self.accumulate_steps < 1 or self.checkpoint_interval < 1 or self.keep_last < 1:
            raise ValueError(
                f"{where}: accumulate_steps, checkpoint_interval and keep_last must be >= 1"
            )
        if self.max_consecutive_nan < 1 or self.image_interval < 0 or self.eval_interval < 0:
            raise ValueError(
                f"{where}: max_consecutive_nan >= 1, image_interval and eval_interval >= 0"
            )
        if not 0 <= self.ema_max_momentum < 1 or self.ema_warm < 0:
            raise ValueError(f"{where}: ema_max_momentum in [0, 1) and ema_warm >= 0 required")
        if self.dist_timeout_s <= 0 or self.threads < 0:
            raise ValueError(f"{where}: dist_timeout_s > 0 and threads >= 0 required")
        if self.ema and self.teacher.enabled:
            raise ValueError(
                f"{where}: ema and teacher.enabled are exclusive: the teacher is the run's EMA "
                f"(its momentum is set in {where}.teacher)"
            )
        if self.teacher.enabled and self.teacher.start_step >= self.max_steps:
            raise ValueError(
                f"{where}.teacher.start_step ({self.teacher.start_step}) >= {where}.max_steps "
                f"({self.max_steps}): the teacher would never run"
            )
        self.teacher.validate(f"{where}.teacher")
