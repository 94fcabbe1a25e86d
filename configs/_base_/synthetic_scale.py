# The network, images, rays and step budget of the synthetic experiments: a small network
# trained from scratch on the embedded synthetic dataset on CPU. Grid and image size are
# scaled down so that a few hundred steps take minutes. The experiment configs choose the
# losses.
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
)

render = dict(step_fraction=0.5)

train = dict(
    max_steps=500,
    lr=2e-3,
    warmup_steps=50,
    log_interval=10,
    checkpoint_interval=100,
    eval_interval=250,  # validation metrics in TensorBoard and on the console
    image_interval=100,  # picture panels of the first validation sample in TensorBoard
)
