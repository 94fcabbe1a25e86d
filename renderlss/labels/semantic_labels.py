"""2D semantic labels from class-agnostic masks voted by LiDAR-segmentation points.

For every keyframe camera image: a mask source (``mask_sources``) cuts the image into
segments, the semantic targets of a vote source (the keyframe lidarseg points projected into
the image, or any other :class:`PixelTargets` with classes) vote for each segment's class
(``mask_voting``), and the result is written as ``<out>/<CAM>/<image stem>.npz`` with
``labels`` (uint8 [H, W], Occ3D class, ``ignore_index`` = unlabelled) and ``confidence``
(float32 [H, W], the purity of the pixel's segment, 0 = unlabelled), plus
``<out>/manifest.json`` recording the settings. See docs/sam_labels.md.

The files plug in as a render-target source through
``renderlss.targets.semantic_label_files.SemanticLabelSource``, and
``renderlss.eval.label_quality`` measures them against the synthetic oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderlss.labels.artifacts import BuildSummary, pending_keyframes, write_or_check_manifest
from renderlss.labels.mask_sources import MaskSource
from renderlss.labels.mask_voting import vote_labels
from renderlss.records.files import output_path
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.semantic_label_files import SemanticLabels, save_semantic_labels
from renderlss.targets.sources import TargetSource

SEMANTIC_LABEL_FORMAT = "renderlss-semantic-labels"
SEMANTIC_LABEL_VERSION = 1


@dataclass
class LabelSettings:
    """How votes decide a segment's class (see ``mask_voting``)."""

    min_votes: float = 3.0  # summed voter confidence (= point count for LiDAR) per segment
    min_purity: float = 0.7  # winner's share of the votes (of a segment or minority cluster)
    # Minority clusters keep their pixels (small objects inside a large mask): link and claim
    # radius in pixels (0 = off) and the weight a cluster needs.
    minority_radius: float = 0.0
    minority_min_votes: float = 3.0

    def validate(self) -> None:
        if self.min_votes < 0:
            raise ValueError(f"min_votes must be >= 0, got {self.min_votes}")
        if self.minority_radius < 0 or self.minority_min_votes < 1:
            raise ValueError(
                "minority_radius must be >= 0 and minority_min_votes >= 1, got "
                f"{self.minority_radius}, {self.minority_min_votes}"
            )
        if not 0 <= self.min_purity <= 1:
            raise ValueError(f"min_purity must be in [0, 1], got {self.min_purity}")


def image_size(cam_info: dict, where: str) -> tuple[int, int]:
    """(H, W) of a camera image from its info record."""
    try:
        size = int(cam_info["height"]), int(cam_info["width"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: no valid 'width'/'height' in the info ({err!r})") from err
    if min(size) <= 0:
        raise ValueError(
            f"{where}: image size {size[1]}x{size[0]} in the info (BEVDet infos do not record "
            "it: rebuild them with tools/create_data.py)"
        )
    return size


@dataclass
class Labeller:
    """How the images of a keyframe are labelled.

    Attributes:
        masks: cuts a camera image into class-agnostic segments.
        voters: the target source whose classes vote for each segment's class (e.g. the
            keyframe lidarseg points, ``renderlss.targets.sources.LidarTargetSource``).
        voters_manifest: what decides the voters (e.g. their ego box and min depth), stored
            in the manifest with the mask and voting settings.
        class_names: the Occ3D classes (without free); ignore_index: unlabelled pixels.
    """

    masks: MaskSource
    voters: TargetSource
    voters_manifest: dict
    class_names: list[str]
    ignore_index: int
    settings: LabelSettings = field(default_factory=LabelSettings)

    def manifest(self, cameras: list[str]) -> dict:
        """The parameters that decide the output files (a folder keeps to one set)."""
        return dict(
            format=SEMANTIC_LABEL_FORMAT,
            version=SEMANTIC_LABEL_VERSION,
            cameras=cameras,
            config=dict(
                masks=self.masks.settings(),
                min_votes=self.settings.min_votes,
                min_purity=self.settings.min_purity,
                minority_radius=self.settings.minority_radius,
                minority_min_votes=self.settings.minority_min_votes,
                class_names=self.class_names,
                ignore_index=self.ignore_index,
                **self.voters_manifest,
            ),
        )

    def image_labels(
        self, segments: np.ndarray, voters: PixelTargets, where: str
    ) -> SemanticLabels:
        """Labels of one image; refuses an image without a single labelled voter (e.g. a
        sample without lidarseg), which would otherwise come out silently all-ignored."""
        if not np.any(voters.semantics != self.ignore_index):
            raise ValueError(f"{where}: no labelled points to vote with (no lidarseg?)")
        labels, confidence = vote_labels(
            segments,
            voters,
            len(self.class_names),
            self.ignore_index,
            self.settings.min_votes,
            self.settings.min_purity,
            where,
            self.settings.minority_radius,
            self.settings.minority_min_votes,
        )
        return SemanticLabels(labels, confidence)


@dataclass
class SemanticLabelSummary(BuildSummary):
    """Outcome of :func:`build_semantic_labels` (one failure reason per image)."""

    labelled_fraction: float = 0.0  # mean share of labelled pixels over written images

    def details(self) -> list[str]:
        return [f"  labelled pixels per written image: {self.labelled_fraction:.1%}"]


def label_keyframe(
    labeller: Labeller,
    info: dict,
    cameras: list[str],
    dataroot: str | Path,
    out_dir: Path,
    summary: SemanticLabelSummary,
) -> list[float]:
    """Write the labels of ``cameras`` of one keyframe; failures go into ``summary``.

    A keyframe whose voters cannot be read fails all its images; an image whose masks fail
    (unreadable or mismatched mask file) fails alone.

    Returns:
        The share of labelled pixels of each image written.
    """
    what = f"sample {info.get('token', '?')}"
    try:
        voters = labeller.voters(info, cameras)
    except KeyError as err:
        summary.failed += [f"{what} {cam}: field {err} missing" for cam in cameras]
        return []
    except (OSError, ValueError) as err:
        summary.failed += [f"{what} {cam}: {err}" for cam in cameras]
        return []
    labelled = []
    for cam in cameras:
        cam_info = info["cams"][cam]
        where = f"{what} {cam}"
        try:
            size = image_size(cam_info, where)
            segments = labeller.masks(cam, Path(dataroot) / cam_info["data_path"], size)
            labels = labeller.image_labels(segments, voters[cam], where)
        except (OSError, ValueError) as err:
            summary.failed.append(f"{where}: {err}")
            continue
        save_semantic_labels(output_path(out_dir, cam, cam_info["data_path"]), labels)
        labelled.append(float(np.mean(labels.labels != labeller.ignore_index)))
    return labelled


def build_semantic_labels(
    infos: list[dict],
    dataroot: str | Path,
    out_dir: str | Path,
    cameras: list[str],
    labeller: Labeller,
    shard: tuple[int, int] = (0, 1),
    show_progress: bool = True,
) -> SemanticLabelSummary:
    """Write the labels of every camera image of the shard's keyframes.

    Finished files are skipped (resume by rerunning); every failure is listed in the summary
    and the run goes on (see :func:`label_keyframe`). The labeller's manifest is stored in
    ``<out>/manifest.json``, and a folder built with other settings is refused.
    """
    labeller.settings.validate()
    out_dir = Path(out_dir)
    write_or_check_manifest(out_dir, labeller.manifest(cameras))
    summary = SemanticLabelSummary()
    labelled: list[float] = []
    for _, info, pending in pending_keyframes(
        infos, shard, out_dir, cameras, summary, "semantic labels", show_progress
    ):
        labelled += label_keyframe(labeller, info, pending, dataroot, out_dir, summary)
    summary.done = len(labelled)
    summary.labelled_fraction = sum(labelled) / max(summary.done, 1)
    return summary
