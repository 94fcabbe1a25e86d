# Paper-scale setting on nuScenes / Occ3D-nuScenes, close to RenderOcc's: 6 x 256 x 704 input,
# ResNet-50, 88 uniform depth bins over [1, 45) m, a 200 x 200 x 16 x 32 volume at 0.4 m,
# 38,400 rays per sample from the keyframe and its +-3 neighbours, 2D supervision only.
_base_ = ["_base_/occ3d_nuscenes.py"]

_data_root = "data/nuscenes"

data = dict(
    train_infos=f"{_data_root}/infos/renderlss_infos_train.pkl",
    val_infos=f"{_data_root}/infos/renderlss_infos_val.pkl",
    input_size=(256, 704),
    grid=dict(point_cloud_range=(-40.0, -40.0, -1.0, 40.0, 40.0, 5.4), voxel_size=(0.4, 0.4, 0.4)),
    load_occ=True,
    targets=dict(sources=["lidar"], num_rays=38400, adjacent_keyframes=3),
    batch_size=1,
    workers=6,
)

model = dict(
    # Load ImageNet weights from a local file (torchvision or BEVDet layout):
    # backbone=dict(pretrained="checkpoints/resnet50-0676ba61.pth")
    backbone=dict(depth=50, frozen_bn=True),
    neck=dict(out_channels=256, out_stride=16),
    depth=dict(
        bins=dict(mode="UD", d_min=1.0, d_max=45.0, num_bins=88),
        mid_channels=256,
        context_channels=32,
    ),
    encoder3d=dict(channels=32, num_blocks=2),
    head=dict(hidden_channels=64),
    # Class weights from ray-target class counts: python tools/class_frequencies.py CONFIG
    loss=dict(class_counts=f"{_data_root}/infos/class_counts.json"),
)

render = dict(step_fraction=0.5)

train = dict(
    work_dir="work_dirs/renderocc_r50_occ3d",
    max_steps=42_200,  # about 12 epochs of the 28,130 training samples at a global batch of 8
    lr=2e-4,
    weight_decay=1e-2,
    warmup_steps=500,
)
