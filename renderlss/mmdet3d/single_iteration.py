"""A plugin config cut down to one Runner training iteration (tools/mmdet3d_full_stack.sh and
the plugin's tests)."""

from __future__ import annotations

import copy

from mmengine.config import Config, ConfigDict


def add_experiment_overrides(node: object, overrides: list[str]) -> None:
    """Append ``overrides`` to the ``overrides`` of every component (any dict with an
    ``experiment`` key) in a config, in place, so that all of them keep agreeing."""
    if isinstance(node, dict):
        if "experiment" in node:
            node["overrides"] = [*node.get("overrides", []), *overrides]
        for value in node.values():
            add_experiment_overrides(value, overrides)
    elif isinstance(node, list | tuple):
        for value in node:
            add_experiment_overrides(value, overrides)


def single_iteration_config(
    cfg: Config, ann_file: str, work_dir: str, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """A copy of ``cfg`` that trains one iteration of batch size 1 on ``ann_file`` in the
    main process into ``work_dir``, without validation, with renderlss ``overrides``
    added to every component."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=1, val_interval=1 << 30)
    for name in ("val_dataloader", "val_cfg", "val_evaluator"):
        cfg[name] = None
    loader = cfg.train_dataloader
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader.dataset.ann_file = ann_file
    cfg.default_hooks.checkpoint = None
    add_experiment_overrides(cfg._cfg_dict, list(overrides))
    return cfg
