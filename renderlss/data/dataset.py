"""The training/evaluation Dataset: one keyframe of an info file -> a dict of tensors.

Frames: ``cam2ego`` maps camera points into the *key ego frame* (the ego pose of the
keyframe's LiDAR), chained through the global frame in float64 because each camera has its
own ego pose at its own timestamp; BEV augmentation is then applied on top.

Render targets (``sample["targets"]``) are rays in the augmented key-ego frame with depth and
class targets, drawn from the target sources named in ``data.targets`` (see
``renderlss.data.render_targets``); with no source configured the dict stays empty.

Unlabeled records (``renderlss.data.unlabeled``) give the same sample with ``meta["labeled"]``
False: Occ3D labels all ignore index with zero masks, and rays from the LiDAR source alone
with every class target the ignore index, drawn without looking at any class.
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from renderlss.data.augment import (
    BevAugParams,
    apply_bev_aug_to_voxels,
    apply_image_aug,
    bev_aug_matrix,
    image_aug_matrix,
    sample_bev_aug,
    sample_image_aug,
)
from renderlss.data.config import DataConfig
from renderlss.data.label_grid import LabelNesting, nest, pool_labels
from renderlss.data.render_targets import (
    build_query_rays,
    build_ray_targets,
    candidate_pixels,
    collect_frame_targets,
    input_depth_image,
    make_target_sources,
    ray_tensors,
)
from renderlss.data.unlabeled import is_labeled, strip_labels
from renderlss.records.files import read_rgb_image
from renderlss.records.infos import camera_to_key_ego, info_intrinsic, info_pose, load_infos

OCC_FIELDS = ("semantics", "mask_lidar", "mask_camera")
# What a damaged .npz raises: a broken archive, a member whose compressed data or CRC does
# not check out, or a broken array header.
_CORRUPT_FILE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class PackedRecords:
    """A read-only list of dicts kept as one pickled byte buffer.

    DataLoader workers are forked from the main process; touching millions of small Python
    objects there updates their reference counts and copies their memory pages into every
    worker, which grows host memory with the number of workers. One numpy buffer is never
    copied, and every access returns a fresh copy that callers may modify.
    """

    def __init__(self, records: list[dict]) -> None:
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        self._offsets = np.cumsum([0] + [len(b) for b in blobs])
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range [0, {len(self)})")
        start, end = self._offsets[index], self._offsets[index + 1]
        return pickle.loads(self._buffer[start:end].tobytes())


def load_occ_labels(
    path: str, token: str, shape: tuple[int, int, int] | None
) -> dict[str, np.ndarray]:
    """Occ3D ``labels.npz`` as arrays of the label grid's ``shape``, read and checked field
    by field (an error names the file, the sample and the field); ``shape`` None (the grid
    is not known, as in a file check) only requires the fields to share one 3D shape."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: occupancy label file missing (sample {token})")
    corrupt = f"{path}: occupancy label file is corrupt (sample {token}"
    try:
        archive = np.load(path)
    except _CORRUPT_FILE as err:
        raise ValueError(f"{corrupt}): {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{corrupt}): not an .npz archive")
    labels = {}
    with archive:
        for name in OCC_FIELDS:
            if name not in archive:
                raise ValueError(f"{path}: field {name!r} missing (sample {token})")
            try:
                labels[name] = np.asarray(archive[name])
            except _CORRUPT_FILE as err:
                raise ValueError(f"{corrupt}, field {name!r}): {err}") from err
    if shape is None:
        shape = labels[OCC_FIELDS[0]].shape
        if len(shape) != 3:
            raise ValueError(f"{path}: field {OCC_FIELDS[0]!r} is not 3D: {shape} (sample {token})")
    for name, array in labels.items():
        if array.shape != shape:
            raise ValueError(
                f"{path}: field {name!r} has shape {array.shape}, the label grid is {shape} "
                f"(data.label_grid, or data.grid when unset; sample {token})"
            )
    return labels


class OccDataset(Dataset):
    """Keyframes of an info file as model inputs (sample layout in docs/data.md).

    Args:
        infos: path of an info pickle, or ``(metadata, infos)`` as returned by ``load_infos``.
        config: the data section of the experiment config.
        train: random augmentation (seeded by ``(config.seed, epoch, index)``) when True;
            deterministic resize + bottom crop and no BEV augmentation when False.
        occ_when_available: Occ3D labels in every sample exactly when every record names a
            label file and ``config.occ_label_grid`` nests ``config.grid`` (evaluation),
            whatever ``config.load_occ`` says; otherwise ``occ_unavailable`` says why not.
            When False, ``config.load_occ`` decides, and a grid that does not nest or a
            record without labels is an error.
    """

    def __init__(
        self,
        infos: str | Path | tuple[dict, list[dict]],
        config: DataConfig,
        train: bool,
        *,
        occ_when_available: bool = False,
    ) -> None:
        if isinstance(infos, str | Path):
            self.source = str(infos)
            self.metadata, records = load_infos(infos)
        else:
            self.source = "<in-memory infos>"
            self.metadata, records = infos
        # label_nesting is None exactly when samples carry no Occ3D labels.
        self.label_nesting: LabelNesting | None = None
        self.occ_unavailable = "data.load_occ is False"
        if occ_when_available:
            self.occ_unavailable = self._missing_label_files(records)
            if not self.occ_unavailable:
                try:
                    self.label_nesting = nest(config.occ_label_grid, config.grid)
                except ValueError as err:
                    self.occ_unavailable = str(err)
        elif config.load_occ:
            self.label_nesting = nest(config.occ_label_grid, config.grid)
            self.occ_unavailable = ""
        self.infos = PackedRecords(records)
        self.config = config
        self.train = train
        self.epoch = 0
        self.dataroot = config.dataroot or self.metadata.get("dataroot", "")
        self.index_of_token = {info["token"]: i for i, info in enumerate(records)}
        self.target_sources = make_target_sources(config.targets, self.dataroot, config.classes)
        # What an unlabeled sample reads: the LiDAR depth (lidarseg stripped), no other source.
        self.depth_sources = [
            source
            for name, source in zip(config.targets.sources, self.target_sources)
            if name == "lidar"
        ]

    def __len__(self) -> int:
        return len(self.infos)

    @property
    def loads_occ(self) -> bool:
        """Whether samples carry Occ3D labels (``voxel_semantics``, ``mask_*``)."""
        return self.label_nesting is not None

    def _missing_label_files(self, records: list[dict]) -> str:
        """Why the records have no Occ3D labels to load ("" when every one names a file)."""
        missing = [info["token"] for info in records if not info.get("occ_path")]
        if not records or len(missing) == len(records):
            return f"{self.source}: no sample has Occ3D labels (occ_path)"
        if missing:
            return (
                f"{self.source}: {len(missing)} of {len(records)} samples have no Occ3D labels "
                f"(occ_path), e.g. sample {missing[0]}"
            )
        return ""

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch (call before iterating)."""
        self.epoch = epoch

    def resolve(self, path: str, token: str) -> str:
        """Absolute path of a file named in an info record."""
        if os.path.isabs(path):
            return path
        if not self.dataroot:
            raise ValueError(
                f"{self.source}: sample {token} names the relative path {path!r} but no "
                "dataroot is known; set data.dataroot"
            )
        return os.path.join(self.dataroot, path)

    def _rng(self, index: int) -> np.random.Generator | None:
        if not self.train:
            return None
        return np.random.default_rng([self.config.seed, self.epoch, index])

    def _camera(self, info: dict, name: str, rng: np.random.Generator | None) -> dict:
        """Image, intrinsics, augmentation and raw poses of one camera."""
        token = info["token"]
        where = f"{self.source}: sample {token}, camera {name}"
        if name not in info["cams"]:
            raise ValueError(f"{where}: camera missing (available: {sorted(info['cams'])})")
        cam = info["cams"][name]
        path = self.resolve(cam["data_path"], token)
        image = read_rgb_image(path, f"sample {token}")
        expected = (cam.get("height", 0), cam.get("width", 0))
        if all(expected) and image.shape[:2] != expected:
            raise ValueError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]}, info says "
                f"{expected[1]}x{expected[0]} (sample {token})"
            )
        input_size = self.config.input_size
        params = sample_image_aug(image.shape[:2], input_size, self.config.image_aug, rng)
        return dict(
            image=apply_image_aug(image, params, input_size),
            intrinsic=info_intrinsic(cam, where),
            img_aug=image_aug_matrix(params, image.shape[:2], input_size),
            sensor2ego=info_pose(cam, "sensor2ego", where),
            ego2global=info_pose(cam, "ego2global", where),
            path=path,
        )

    def _normalise(self, images: np.ndarray) -> torch.Tensor:
        """[N, H, W, 3] uint8 RGB -> [N, 3, H, W] float32 normalised."""
        mean = torch.tensor(self.config.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.config.image_std, dtype=torch.float32)[:, None, None]
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        return pixels.sub_(mean).div_(std).contiguous()

    def _unlabeled_occupancy(self) -> dict[str, torch.Tensor]:
        """[X, Y, Z] labels of an unlabeled sample: the ignore index, masks all False."""
        shape = self.config.grid.shape
        return dict(
            voxel_semantics=torch.full(shape, self.config.classes.ignore_index, dtype=torch.int64),
            mask_lidar=torch.zeros(shape, dtype=torch.bool),
            mask_camera=torch.zeros(shape, dtype=torch.bool),
        )

    def occupancy_labels(self, info: dict) -> dict[str, np.ndarray]:
        """The Occ3D labels of a labeled record on the model grid, not augmented:
        ``semantics``, ``mask_lidar``, ``mask_camera`` uint8 [X, Y, Z] (the label grid
        cropped and pooled, ``renderlss.data.label_grid``)."""
        token = info["token"]
        if self.label_nesting is None:
            raise ValueError(f"{self.source}: no Occ3D labels are loaded: {self.occ_unavailable}")
        if not info.get("occ_path"):
            raise ValueError(
                f"{self.source}: sample {token} has no occ_path (no Occ3D labels); "
                "set data.load_occ=False to train without them"
            )
        path = self.resolve(info["occ_path"], token)
        labels = load_occ_labels(path, token, self.config.occ_label_grid.shape)
        classes = self.config.classes
        return pool_labels(
            labels,
            self.label_nesting,
            classes.free_index,
            classes.ignore_index,
            f"{path} (sample {token})",
        )

    def _occupancy(self, info: dict, bev_params: BevAugParams) -> dict[str, torch.Tensor]:
        if not is_labeled(info):
            return self._unlabeled_occupancy()
        labels = self.occupancy_labels(info)
        fills = dict(semantics=self.config.classes.free_index, mask_lidar=0, mask_camera=0)
        out = {
            name: apply_bev_aug_to_voxels(labels[name], bev_params, self.config.grid, fills[name])
            for name in OCC_FIELDS
        }
        return dict(
            voxel_semantics=torch.from_numpy(out["semantics"].astype(np.int64)),
            mask_lidar=torch.from_numpy(out["mask_lidar"].astype(bool)),
            mask_camera=torch.from_numpy(out["mask_camera"].astype(bool)),
        )

    def __getitem__(self, index: int) -> dict:
        info = self.infos[index]
        token = info["token"]
        rng = self._rng(index)
        where = f"{self.source}: sample {token}"
        lidar_ego2global = info_pose(info, "ego2global", where)
        cams = [self._camera(info, name, rng) for name in self.config.cameras]
        bev_params = sample_bev_aug(self.config.bev_aug, rng)
        bev_aug = bev_aug_matrix(bev_params, self.config.grid)
        cam2ego = np.stack(
            [bev_aug @ camera_to_key_ego(info["cams"][name], info) for name in self.config.cameras]
        )
        sample = dict(
            img=self._normalise(np.stack([c["image"] for c in cams])),
            intrinsic=torch.from_numpy(np.stack([c["intrinsic"] for c in cams]).astype(np.float32)),
            img_aug=torch.from_numpy(np.stack([c["img_aug"] for c in cams]).astype(np.float32)),
            cam2ego=torch.from_numpy(cam2ego.astype(np.float32)),
            bev_aug=torch.from_numpy(bev_aug.astype(np.float32)),
            targets={},
            meta=dict(
                token=token,
                labeled=is_labeled(info),
                scene_name=info.get("scene_name", ""),
                timestamp=info.get("timestamp", 0),
                cameras=list(self.config.cameras),
                image_paths=[c["path"] for c in cams],
                lidar_path=self.resolve(info["lidar_path"], token)
                if info.get("lidar_path")
                else "",
                sensor2ego=np.stack([c["sensor2ego"] for c in cams]),
                ego2global=np.stack([c["ego2global"] for c in cams]),
                lidar_ego2global=lidar_ego2global,
                bev_aug=bev_aug,
            ),
        )
        if self.loads_occ:
            sample.update(self._occupancy(info, bev_params))
        if self.target_sources:
            img_aug = np.stack([c["img_aug"] for c in cams])
            sample.update(self._render_targets(info, index, bev_aug, img_aug))
        return sample

    def _lookup(self, token: str) -> dict | None:
        index = self.index_of_token.get(token)
        return None if index is None else self.infos[index]

    def _lookup_unlabeled(self, token: str) -> dict | None:
        """A neighbour of an unlabeled sample, stripped of its labels as well."""
        info = self._lookup(token)
        return None if info is None else strip_labels(info)

    def _render_targets(
        self, info: dict, index: int, bev_aug: np.ndarray, img_aug: np.ndarray
    ) -> dict[str, dict[str, torch.Tensor]]:
        """``targets``: rays with targets, plus ``image_depth`` [N, H, W], the current
        keyframe's target depth in each augmented input image (for the LSS depth loss);
        and, with ``data.targets.query_rays``, ``query_targets``: the rays of the ray-query
        losses alone."""
        config = self.config.targets
        sources, lookup = self.target_sources, self._lookup
        if not is_labeled(info):
            if not info.get("lidar_path"):
                raise ValueError(
                    f"{self.source}: sample {info['token']}, field 'lidar_path' is empty: an "
                    "unlabeled sample takes its depth targets from its LiDAR sweep"
                )
            # With no class among the candidates, no share of the rays needs to be kept
            # for class targets.
            info, sources, lookup = strip_labels(info), self.depth_sources, self._lookup_unlabeled
            config = replace(config, max_unlabelled_share=1.0)
        frames = collect_frame_targets(
            info, lookup, sources, self.config.cameras, config.adjacent_keyframes
        )
        # Ray draws are random in eval mode too (a fixed subset per sample), seeded by index.
        rng = np.random.default_rng([self.config.seed, self.epoch if self.train else 0, index])
        key_info, candidates = frames[0][0], candidate_pixels(frames)
        rays = build_ray_targets(
            key_info, candidates, config, self.config.classes, self.config.grid, bev_aug, rng
        )
        current = frames[0][2]
        rays["image_depth"] = np.stack(
            [
                input_depth_image(current[cam], aug, self.config.input_size)
                for cam, aug in zip(self.config.cameras, img_aug)
            ]
        )
        out = {"targets": ray_tensors(rays)}
        if config.query_rays:
            query = build_query_rays(
                key_info, candidates, config, self.config.classes, bev_aug, rng
            )
            out["query_targets"] = ray_tensors(query)
        return out
