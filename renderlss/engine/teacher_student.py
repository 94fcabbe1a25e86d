"""One step of the depth-aware teacher-student loop (``train.teacher``; docs/teacher_student.md).

The batch's ``labeled`` [B] bool tells labeled samples from unlabeled ones. The student sees
:func:`student_view`: the batch with the images of unlabeled samples photometrically
jittered (the strong view; geometry unchanged, so the rays, augmentation matrices and LiDAR
pixels stay those of the batch) and every label of unlabeled samples removed, so they add
nothing to the supervised terms (LiDAR is a measurement, not a label: with
``lifting_depth_on_unlabeled`` their LiDAR depth map stays the target of the lifting-depth
term, with ``ray_depth_on_unlabeled`` their rays' depth that of the rendered-depth and
ray-query terms). The teacher (the EMA of the student, eval mode, no gradient) sees the
batch as it is (the weak view: the same geometric augmentation, no jitter), so its rendering
along the batch's rays is the student's rays seen by the teacher. Depth-aware, the teacher
lifts with a one-hot at the measured bin at the feature cells that hold a LiDAR point
(``targets.image_depth``). Its rendering gives the pseudo labels of
:mod:`renderlss.models.pseudo_labels`, learnt on the unlabeled samples with weights that
ramp up after ``start_step``.

Monitoring values are (sum, count) pairs so that micro-batches and processes combine into
exact ratios: the share of unlabeled rays kept, the kept rays' class agreement with the
labeled samples' classes, their rendered depth against measured depth, and the
teacher-student gap in rendered depth.
"""

from __future__ import annotations

import torch

from renderlss.data.config import DataConfig
from renderlss.models.depth_net import depth_distribution
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.models.pseudo_labels import (
    PseudoRayLabels,
    bins_up_to_surface,
    frustum_visibility,
    pseudo_ray_losses,
    pseudo_voxel_loss,
    ray_pseudo_labels,
    voxel_pseudo_labels,
)
from renderlss.ops.frustum import frustum_points
from renderlss.ops.render import RenderOutput
from renderlss.train.config import TeacherConfig
from renderlss.train.photometric import photometric_jitter

# Names of the monitoring values; the trainer logs them under train/ (not train/loss/).
MONITOR_PREFIX = "teacher/"
RAY_MONITORS = ("kept_share", "class_agreement", "depth_abs_rel", "depth_gap")


def pseudo_weight_factor(step: int, start_step: int, ramp_steps: int) -> float:
    """Multiplier of the pseudo weights at ``step``: 0 before ``start_step``, then
    ``min(1, (step - start_step + 1) / ramp_steps)`` (1 at once when ``ramp_steps`` is 0)."""
    if step < start_step:
        return 0.0
    if ramp_steps == 0:
        return 1.0
    return min(1.0, (step - start_step + 1) / ramp_steps)


def labeled_samples(batch: dict) -> torch.Tensor:
    """``batch["labeled"]`` [B] as bool; an error naming the batch's tokens when missing."""
    labeled = batch.get("labeled")
    if labeled is None:
        tokens = [m["token"] for m in batch.get("meta", [])]
        raise ValueError(
            f"train.teacher.enabled: the batch of samples {tokens} has no field 'labeled' "
            "(unlabeled frames come from data.unlabeled)"
        )
    return torch.as_tensor(labeled, dtype=torch.bool, device=batch["img"].device)


def _keep_rows(
    value: torch.Tensor, labeled: torch.Tensor, fill: float | int | bool
) -> torch.Tensor:
    """``value`` [B, ...] with the rows of unlabeled samples set to ``fill``."""
    rows = labeled.view(-1, *([1] * (value.dim() - 1)))
    return torch.where(rows, value, torch.full_like(value, fill))


def student_view(
    batch: dict, labeled: torch.Tensor, data: DataConfig, teacher: TeacherConfig
) -> dict:
    """The student's batch: unlabeled samples jittered and without labels.

    Unlabeled samples get jittered images, ray depth 0 in ``targets`` and ``query_targets``
    (no depth term and no ray-query point reads them; unless
    ``teacher.ray_depth_on_unlabeled``), ray class ``ignore_index``, no ``image_depth``
    (unless ``teacher.lifting_depth_on_unlabeled``) and voxel labels ``ignore_index``
    (whatever their masks say). ``batch`` is not modified.
    """
    view = dict(batch)
    unlabeled = ~labeled
    if bool(unlabeled.any()):
        images = batch["img"].clone()
        images[unlabeled] = photometric_jitter(
            images[unlabeled].flatten(0, 1),
            data.image_mean,
            data.image_std,
            teacher.jitter_brightness,
            teacher.jitter_contrast,
            teacher.jitter_saturation,
        ).unflatten(0, images[unlabeled].shape[:2])
        view["img"] = images
    ignore = data.classes.ignore_index
    fills: dict[str, float | int] = dict(semantics=ignore)
    if not teacher.ray_depth_on_unlabeled:
        fills["depth"] = 0.0
    if not teacher.lifting_depth_on_unlabeled:
        fills["image_depth"] = 0.0
    for rays in ("targets", "query_targets"):
        if rays in batch:
            view[rays] = {
                name: _keep_rows(value, labeled, fills[name]) if name in fills else value
                for name, value in batch[rays].items()
            }
    if "voxel_semantics" in batch:
        view["voxel_semantics"] = _keep_rows(batch["voxel_semantics"], labeled, ignore)
    return view


@torch.no_grad()
def teacher_rendering(
    teacher: OccupancyNet, batch: dict, depth_aware: bool
) -> tuple[dict[str, torch.Tensor], RenderOutput]:
    """The teacher's volume and its rendering along the batch's rays; depth-aware, lifted
    with the measured depth of ``targets.image_depth``."""
    measured = batch["targets"]["image_depth"] if depth_aware else None
    predictions = teacher.volume(batch, measured)
    return predictions, teacher.render(predictions, batch["targets"])


def _ratio(numerator: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[2] float32: (sum of ``numerator`` over ``mask``, count of ``mask``)."""
    total = torch.where(mask, numerator.float(), torch.zeros_like(numerator, dtype=torch.float32))
    return torch.stack([total.sum(), mask.sum().float()])


def ray_monitors(
    labels: PseudoRayLabels,
    teacher_depth: torch.Tensor,
    student_depth: torch.Tensor,
    targets: dict[str, torch.Tensor],
    labeled: torch.Tensor,
    ignore_index: int,
) -> dict[str, torch.Tensor]:
    """(sum, count) pairs of the pseudo labels' quality.

    ``kept_share``: kept rays among the unlabeled samples' rays. ``class_agreement``: kept
    rays of labeled samples whose pseudo class equals their class (the only exact classes a
    batch holds; unlabeled samples have theirs removed). ``depth_abs_rel``: |teacher depth -
    measured| / measured on kept rays with a measured depth. ``depth_gap``: |student depth -
    teacher depth| / teacher depth on the unlabeled samples' kept rays.

    Args:
        labels: of the batch's rays; teacher_depth, student_depth: [B, R] rendered depths.
        targets: the batch's ray targets (``semantics``, ``depth`` [B, R]).
        labeled: [B] bool.
    """
    unlabeled_rays = (~labeled)[:, None].expand_as(labels.keep)
    labeled_rays = labeled[:, None] & (targets["semantics"].long() != ignore_index)
    measured = targets["depth"].float()
    has_depth = labels.keep & (measured > 0)
    safe_measured = torch.where(measured > 0, measured, torch.ones_like(measured))
    safe_teacher = teacher_depth.detach().float().clamp(min=1e-3)
    return {
        "kept_share": _ratio(labels.keep, unlabeled_rays),
        "class_agreement": _ratio(
            labels.semantics == targets["semantics"].long(), labels.keep & labeled_rays
        ),
        "depth_abs_rel": _ratio(
            (teacher_depth.detach().float() - measured).abs() / safe_measured, has_depth
        ),
        "depth_gap": _ratio(
            (student_depth.detach().float() - teacher_depth.detach().float()).abs() / safe_teacher,
            labels.keep & unlabeled_rays,
        ),
    }


def empty_monitors(teacher: TeacherConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """The monitoring pairs of a step without a teacher pass: every name, count 0 (every
    process must reduce the same names)."""
    names = RAY_MONITORS + (("voxel_kept_share",) if teacher.pseudo_voxel_weight else ())
    return {f"{MONITOR_PREFIX}{name}": torch.zeros(2, device=device) for name in names}


def voxel_region_bins(
    teacher_model: OccupancyNet, batch: dict, depth_logits: torch.Tensor, teacher: TeacherConfig
) -> torch.Tensor | None:
    """[B, N, D, h, w] bool, the frustum points of ``teacher.voxel_region="surface"``: up to
    each cell's surface in the teacher's lifted distribution (measured bins where
    depth-aware); None for the whole frustums."""
    if teacher.voxel_region == "frustum":
        return None
    measured = batch["targets"]["image_depth"].flatten(0, 1) if teacher.depth_aware else None
    distribution = depth_distribution(
        depth_logits,
        measured,
        teacher_model.config.depth.bins,
        teacher_model.config.neck.out_stride,
    )
    return bins_up_to_surface(distribution).unflatten(0, batch["img"].shape[:2])


def pseudo_voxel_region(
    teacher_model: OccupancyNet,
    batch: dict,
    depth_logits: torch.Tensor,
    student_predictions: dict[str, torch.Tensor],
    teacher: TeacherConfig,
) -> torch.Tensor:
    """[B, X, Y, Z] bool, where ``teacher.voxel_region`` lets voxel pseudo labels be: the
    voxels of the cameras' frustums (up to each cell's lifted surface for ``"surface"``), or
    for ``"measured"`` those the batch's measured query rays end in (the student's ray-query
    voxel labels, state 2).

    Args:
        depth_logits: [B*N, D, h, w] the teacher's lifting logits.
        student_predictions: the student's outputs, with ``queries`` for ``"measured"``.
    """
    if teacher.voxel_region == "measured":
        queries = student_predictions.get("queries", {})
        if "voxel_state" not in queries:
            raise ValueError(
                "train.teacher.voxel_region='measured' needs the ray-query voxel labels: "
                "model.loss.query_sampling='voxel' with query_weight or "
                "query_semantic_weight > 0"
            )
        return queries["voxel_state"] == 2
    points = frustum_points(
        teacher_model.depth_centers,
        tuple(depth_logits.shape[-2:]),
        teacher_model.config.neck.out_stride,
        batch["img_aug"],
        batch["intrinsic"],
        batch["cam2ego"],
    )
    return frustum_visibility(
        points, teacher_model.grid, voxel_region_bins(teacher_model, batch, depth_logits, teacher)
    )


def teacher_student_terms(
    teacher_model: OccupancyNet,
    batch: dict,
    labeled: torch.Tensor,
    student_predictions: dict[str, torch.Tensor],
    student_rendered: RenderOutput,
    teacher: TeacherConfig,
    data: DataConfig,
    class_weights: dict[str, torch.Tensor | None],
    silog: tuple[float, float],
    factor: float,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Weighted pseudo loss terms and monitoring pairs of one micro-batch.

    Args:
        teacher_model: the EMA teacher (eval mode).
        batch: the batch as loaded (the teacher's weak view, with the measured targets).
        labeled: [B] bool.
        student_predictions, student_rendered: the student's outputs on :func:`student_view`.
        class_weights: of the ``semantic`` and ``occ3d`` terms (the pseudo terms use them).
        silog: (lambda, min_depth) of the depth term.
        factor: :func:`pseudo_weight_factor` of the step; 0 skips the teacher.
    Returns:
        terms: ``pseudo_depth``, ``pseudo_semantic`` (and ``pseudo_voxel``) for the weights
        that are not 0, every one present at every step; monitors: {name: [2] (sum, count)}.
    """
    device = batch["img"].device
    zero = torch.zeros((), device=device)
    weights = dict(
        pseudo_depth=teacher.pseudo_depth_weight,
        pseudo_semantic=teacher.pseudo_semantic_weight,
        pseudo_voxel=teacher.pseudo_voxel_weight,
    )
    terms = {name: zero for name, weight in weights.items() if weight}
    monitors = empty_monitors(teacher, device)
    if factor == 0.0:
        return terms, monitors
    predictions, rendered = teacher_rendering(teacher_model, batch, teacher.depth_aware)
    targets = batch["targets"]
    labels = ray_pseudo_labels(
        rendered.semantics,
        rendered.opacity,
        rendered.depth,
        targets["depth"],
        teacher.confidence_threshold,
        teacher.opacity_threshold,
        data.classes.free_index,
        teacher.depth_aware,
    )
    unlabeled = ~labeled
    losses = pseudo_ray_losses(
        student_rendered.semantics,
        student_rendered.depth,
        labels,
        unlabeled,
        class_weights.get("semantic"),
        *silog,
    )
    ray_pairs = ray_monitors(
        labels,
        rendered.depth,
        student_rendered.depth,
        targets,
        labeled,
        data.classes.ignore_index,
    )
    monitors.update({f"{MONITOR_PREFIX}{name}": pair for name, pair in ray_pairs.items()})
    if teacher.pseudo_voxel_weight:
        visible = pseudo_voxel_region(
            teacher_model, batch, predictions["depth_logits"], student_predictions, teacher
        )
        voxel_labels, keep = voxel_pseudo_labels(
            predictions["logits"],
            visible,
            teacher.voxel_confidence_threshold,
            # A LiDAR ray ends on a surface: a free teacher class there is a disagreement.
            data.classes.free_index if teacher.voxel_region == "measured" else None,
        )
        # The measured voxels are the ray-query term's occupied ones: its class weights.
        weights_of = "semantic" if teacher.voxel_region == "measured" else "occ3d"
        losses["pseudo_voxel"] = pseudo_voxel_loss(
            student_predictions["logits"],
            voxel_labels,
            keep,
            unlabeled,
            class_weights.get(weights_of),
        )
        unlabeled_visible = visible & unlabeled.view(-1, 1, 1, 1)
        monitors[f"{MONITOR_PREFIX}voxel_kept_share"] = _ratio(keep, unlabeled_visible)
    terms = {name: factor * weights[name] * losses[name] for name in terms}
    return terms, monitors


def monitor_ratios(pairs: dict[str, torch.Tensor]) -> dict[str, float]:
    """{name: sum / count} of the (reduced) pairs whose count is not 0."""
    return {name: float(p[0] / p[1]) for name, p in pairs.items() if float(p[1]) > 0}
