# renderlss in an mmengine / mmdet3d pipeline (docs/mmdet3d.md): the demo network and losses
# of configs/synthetic_demo.py trained by mmengine's Runner on data/synthetic, validated with
# Occ3D mIoU and RayIoU. Run from the repository root (paths are relative to it):
#   python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#       Runner.from_cfg(Config.fromfile('configs/mmdet3d/renderlss_occ3d.py')).train()"
# or with mmdet3d's tools/train.py. The renderlss sections (grid, classes, network, losses,
# targets) come from one renderlss config, so every component agrees on them.
custom_imports = dict(imports=["renderlss.mmdet3d"], allow_failed_imports=False)
default_scope = "mmdet3d"

experiment = "configs/synthetic_demo.py"
# renderlss --cfg-options strings, applied to every component alike.
experiment_overrides = []
data_root = "data/synthetic"

model = dict(type="RenderLSSOccupancy", experiment=experiment, overrides=experiment_overrides)

train_pipeline = [
    dict(type="AttachRenderTargets", experiment=experiment, overrides=experiment_overrides),
    dict(type="PackRenderLSSInputs"),
]
val_pipeline = [dict(type="PackRenderLSSInputs")]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="RenderLSSOccDataset",
        ann_file=f"{data_root}/infos/renderlss_infos_train.pkl",
        experiment=experiment,
        overrides=experiment_overrides,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="RenderLSSOccDataset",
        ann_file=f"{data_root}/infos/renderlss_infos_val.pkl",
        experiment=experiment,
        overrides=experiment_overrides,
        pipeline=val_pipeline,
        test_mode=True,
    ),
)
val_evaluator = dict(
    type="RenderLSSOccMetric", experiment=experiment, overrides=experiment_overrides
)

train_cfg = dict(type="IterBasedTrainLoop", max_iters=500, val_interval=250)
val_cfg = dict(type="ValLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01),
    clip_grad=dict(max_norm=35.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.02, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=500, eta_min=2e-5),
]
default_hooks = dict(
    logger=dict(type="LoggerHook", interval=10),
    checkpoint=dict(type="CheckpointHook", interval=250, by_epoch=False),
)
log_processor = dict(by_epoch=False)
work_dir = "work_dirs/mmdet3d_renderlss_occ3d"
randomness = dict(seed=0)
