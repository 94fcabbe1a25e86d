# The demo: a small network trained from scratch on the embedded synthetic dataset, on CPU.
# Grid and image size are scaled down so that a few hundred steps take minutes.
_base_ = ["_base_/occ3d_nuscenes.py"]

_data_root = "data/synthetic"

data = dict(
    train_infos=f"{_data_root}/infos/renderlss_infos_train.pkl",
    val_infos=f"{_data_root}/infos/renderlss_infos_val.pkl",
    input_size=(112, 200),
    grid=dict(point_cloud_range=(-25.6, -25.6, -1.0, 25.6, 25.6, 5.4), voxel_size=(0.8, 0.8, 0.8)),
    # The demo dataset is generated with Occ3D labels on this grid (make_synthetic --grid).
    load_occ=True,
    targets=dict(sources=["lidar"], num_rays=2048, adjacent_keyframes=1),
    batch_size=2,
    workers=2,
)

model = dict(
    # No pretrained weights on the demo machine: train BN statistics from scratch.
    backbone=dict(depth=18, frozen_bn=False),
    neck=dict(out_channels=64, out_stride=8),
    depth=dict(
        bins=dict(mode="UD", d_min=1.0, d_max=45.0, num_bins=44),
        mid_channels=64,
        context_channels=16,
        num_res_blocks=1,
    ),
    encoder3d=dict(channels=16, num_blocks=2),
    head=dict(hidden_channels=32),
    # RenderOcc's "2D + 3D" setting: the Occ3D loss (inside the camera mask) leads and the
    # rendering losses help at a small weight (at weight 1 they hurt once 3D labels exist).
    # The LiDAR depth loss on the depth distribution at full weight: a network trained from
    # scratch for minutes needs it to place features along the rays (at 0.05 the demo
    # stayed below the column-majority baseline after 300 steps; docs/demo.md).
    # Class weights from tools/class_frequencies.py (the demo writes both files first).
    loss=dict(
        class_counts=f"{_data_root}/infos/class_counts.json",
        occ3d_weight=1.0,
        occ3d_class_counts=f"{_data_root}/infos/voxel_class_counts.json",
        depth_weight=0.1,
        semantic_weight=0.1,
        lss_depth_weight=1.0,
    ),
)

render = dict(step_fraction=0.5)

# The 3D loss trains the class logits including free, so occupancy is their argmax.
eval = dict(occupancy_rule="logits")

train = dict(
    work_dir="work_dirs/synthetic_demo",
    max_steps=500,
    lr=2e-3,
    warmup_steps=50,
    log_interval=10,
    checkpoint_interval=100,
    eval_interval=250,  # validation metrics in TensorBoard and on the console
    image_interval=100,  # picture panels of the first validation sample in TensorBoard
)
