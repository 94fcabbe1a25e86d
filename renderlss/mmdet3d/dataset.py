"""``RenderLSSOccDataset``: keyframes of an info file as mmengine pipeline inputs."""

from __future__ import annotations

from dataclasses import replace

from mmdet3d.registry import DATASETS, TRANSFORMS
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from renderlss.data.dataset import OccDataset
from renderlss.engine.experiment import training_data
from renderlss.mmdet3d.experiment import experiment_config
from renderlss.mmdet3d.mmdet3d_infos import MISSING, is_mmdet3d_infos, records_from_mmdet3d
from renderlss.records.infos import InfoUnpickler, load_infos


def read_records(path: str, data_prefix: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """``(metadata, records)`` of a renderlss, BEVDet or mmdet3d>=1.1 info pickle."""
    with open(path, "rb") as handle:
        data = InfoUnpickler(handle).load()
    if is_mmdet3d_infos(data):
        print_log(f"{path}: mmdet3d info file; not in it: {MISSING}", logger="current")
        return records_from_mmdet3d(data, path, data_prefix)
    return load_infos(path)


@DATASETS.register_module()
class RenderLSSOccDataset(BaseDataset):
    """renderlss's :class:`OccDataset` under an mmengine pipeline.

    Each sample dict starts as OccDataset's sample (``img`` [N, 3, H, W], ``intrinsic``,
    ``img_aug`` [N, 3, 3], ``cam2ego``, ``bev_aug``, the Occ3D fields when loaded, ``meta``)
    without render targets (``AttachRenderTargets`` adds them), plus ``info`` (the record),
    ``info_lookup`` (token -> record of this file), ``dataroot`` and ``sample_idx``.

    Args:
        ann_file: a renderlss, BEVDet or mmdet3d>=1.1 info pickle.
        experiment, overrides: the renderlss config whose ``data`` section is read.
        data_prefix: for mmdet3d info files, the folder of each file kind
            (:data:`renderlss.mmdet3d.mmdet3d_infos.DEFAULT_DATA_PREFIX`).
        test_mode: evaluation: no augmentation, Occ3D labels whenever every record has them;
            training: augmentation, labels when a loss term reads them.
    """

    def __init__(
        self,
        ann_file: str,
        experiment: str | dict | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        data_prefix: dict[str, str] | None = None,
        pipeline: list | None = None,
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self.experiment = experiment_config(experiment, overrides)
        self.info_prefix = data_prefix
        super().__init__(
            ann_file=ann_file,
            # Built here from mmdet3d's registry, whatever the default scope is.
            pipeline=[TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline or []],
            test_mode=test_mode,
            serialize_data=False,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        metadata, records = read_records(self.ann_file, self.info_prefix)
        data = self.experiment.data
        without_targets = replace(data.targets, sources=[])
        if self.test_mode:
            config = replace(data, targets=without_targets)
            self.samples = OccDataset((metadata, records), config, False, occ_when_available=True)
        else:
            config = replace(training_data(self.experiment), targets=without_targets)
            self.samples = OccDataset((metadata, records), config, True)
        self.samples.source = self.ann_file
        return [dict(sample_idx=i, token=r["token"]) for i, r in enumerate(records)]

    def record_of_token(self, token: str) -> dict | None:
        """The record of a keyframe of this file, or None (neighbours of a sample)."""
        index = self.samples.index_of_token.get(token)
        return None if index is None else self.samples.infos[index]

    def prepare_data(self, idx: int) -> dict:
        results = self.samples[idx]
        results.update(
            info=self.samples.infos[idx],
            info_lookup=self.record_of_token,
            dataroot=self.samples.dataroot,
            sample_idx=idx,
        )
        return self.pipeline(results)
