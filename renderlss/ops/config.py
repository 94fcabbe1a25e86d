"""Parameters of the volume renderer (``renderlss.ops.render``)."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLERS = ("dense", "packed")


@dataclass(frozen=True)
class RenderConfig:
    """How rays are sampled and composited.

    Distances ``near`` and ``far`` are metres along the unit ray (``t``), not camera z.
    """

    # Sample spacing as a fraction of the smallest voxel edge: step = step_fraction * min(size).
    step_fraction: float = 0.5
    # In training, each sample sits at a uniformly random place inside its interval
    # (stratified sampling); otherwise, and always in evaluation, at the interval's midpoint.
    jitter: bool = True
    # Samples start no closer than ``near`` and end no farther than ``far`` along the ray, on
    # top of the ray's segment inside the grid box (``far=None``: the box alone decides).
    near: float = 0.0
    far: float | None = None
    # Early termination: samples are made ``segment_samples`` at a time; a ray whose
    # transmittance fell below ``early_stop_eps`` gets no more (0: never), and a chunk stops
    # when all its rays are done. The weight left out is below ``early_stop_eps`` per ray.
    early_stop_eps: float = 1e-4
    segment_samples: int = 64
    # Rays rendered together: bounds the working memory of evaluation to about
    # chunk_size x samples per ray x (5 + K) floats (training keeps every sample for backward).
    chunk_size: int = 4096
    # On CUDA, compute the weights with nerfacc's packed (ray_indices) path instead of the
    # batched one. Same values; needs nerfacc's compiled CUDA extension. Ignored on CPU.
    cuda_packed_weights: bool = False
    # Which samples are made: "dense" steps every interval of the ray's box segment (with
    # early termination); "packed" (renderlss.ops.packed_render) makes the same intervals but
    # samples only those whose voxel neighbourhood holds density above
    # skip_optical_depth / (the ray's length in the box), and none once the ray's
    # transmittance fell below early_stop_eps: fewer samples, same values up to the bounds.
    sampler: str = "dense"
    # Packed sampler: the most optical depth one ray may lose to skipped samples (0: skip
    # only exactly empty space). Weights change by a factor within [1, exp(skip_optical_depth)].
    skip_optical_depth: float = 1e-3

    def validate(self, where: str) -> None:
        if self.step_fraction <= 0:
            raise ValueError(f"{where}.step_fraction: must be > 0, got {self.step_fraction}")
        if self.near < 0:
            raise ValueError(f"{where}.near: must be >= 0, got {self.near}")
        if self.far is not None and self.far <= self.near:
            raise ValueError(f"{where}.far: must exceed near ({self.near}), got {self.far}")
        if not 0.0 <= self.early_stop_eps < 1.0:
            raise ValueError(
                f"{where}.early_stop_eps: must be in [0, 1), got {self.early_stop_eps}"
            )
        if self.segment_samples < 1:
            raise ValueError(f"{where}.segment_samples: must be >= 1, got {self.segment_samples}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"{where}.sampler: must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.skip_optical_depth < 0:
            raise ValueError(
                f"{where}.skip_optical_depth: must be >= 0, got {self.skip_optical_depth}"
            )
        if self.chunk_size < 1:
            raise ValueError(f"{where}.chunk_size: must be >= 1, got {self.chunk_size}")
