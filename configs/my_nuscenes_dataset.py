# Template for your own nuScenes-format dataset (docs/own_dataset.md walks through every
# command): copy it, set _data_root, and run the tools in the order of that page.
#
# The network and grid are the demo's (64 x 64 x 8 voxels of 0.8 m over +-25.6 m, a small
# ResNet-18 network that trains on one CPU); the Occ3D labels stay on the grid they come
# with, 200 x 200 x 16 voxels of 0.4 m over [-40, 40] x [-40, 40] x [-1, 5.4] m as in
# Occ3D-nuScenes, and are cropped and pooled onto the model grid (docs/formats.md).
# Supervision is 2D only (LiDAR depth and classes through rendering and ray queries, as
# configs/synthetic_2d.py); the Occ3D labels score the model in evaluation.
_base_ = ["_base_/occ3d_nuscenes.py", "_base_/synthetic_scale.py", "_base_/losses_2d.py"]

_data_root = "data/my_dataset"  # the dataroot: v1.0-*/ tables, samples/, sweeps/, gts/

data = dict(
    # tools/create_data.py writes renderlss_infos_<split>.pkl: train / val for
    # v1.0-trainval and for versions without an official split, mini_train / mini_val for
    # v1.0-mini.
    train_infos=f"{_data_root}/infos/renderlss_infos_train.pkl",
    val_infos=f"{_data_root}/infos/renderlss_infos_val.pkl",
    # Camera images are resized to this (H, W); 256 x 704 is the paper scale.
    input_size=(112, 200),
    grid=dict(point_cloud_range=(-25.6, -25.6, -1.0, 25.6, 25.6, 5.4), voxel_size=(0.8, 0.8, 0.8)),
    # The grid of the gts/<scene>/<sample>/labels.npz files; it must contain `grid` at a whole
    # number of label voxels per model voxel (here 2 x 2 x 2, starting 36 voxels in along x
    # and y). Remove it when your labels are on `grid` itself.
    label_grid=dict(
        point_cloud_range=(-40.0, -40.0, -1.0, 40.0, 40.0, 5.4), voxel_size=(0.4, 0.4, 0.4)
    ),
    # Training reads the Occ3D labels only when a loss uses them (model.loss.occ3d_weight
    # > 0); evaluation reads them whenever the info files name them.
    load_occ=True,
    # Render targets. Add "dense_depth" and "sam_labels" once tools/make_dense_depth.py and
    # tools/make_sam_labels.py have written their folders:
    #   sources=["lidar", "dense_depth", "sam_labels"],
    #   dense_depth_dir=f"{_data_root}/dense_depth", sam_labels_dir=f"{_data_root}/sam_labels",
    # LiDAR points the camera cannot see (behind near cars) are dropped; the radius is in
    # pixels of an image 400 px wide and grows with the width (docs/data.md).
    targets=dict(sources=["lidar"], num_rays=2048, adjacent_keyframes=1, lidar_hidden_radius=8),
)

model = dict(
    loss=dict(
        # Class weights of the rendered semantics from the classes of the training rays:
        #   python tools/class_frequencies.py configs/my_nuscenes_dataset.py \
        #       --out data/my_dataset/infos/class_counts.json
        # or class_counts="" for equal weights.
        class_counts=f"{_data_root}/infos/class_counts.json",
        # 2D + 3D instead: the losses of configs/_base_/losses_2d_3d.py with
        # occ3d_class_counts from
        # `tools/class_frequencies.py CONFIG --source occ --out .../voxel_class_counts.json`
        # (eval.occupancy_rule="logits" then reads occupancy from the class logits).
    ),
)

# Occupancy from the density (configs/_base_/losses_2d.py): pick the threshold on the
# training split with tools/pick_threshold.py and pass it as eval.occupancy_threshold.

train = dict(work_dir="work_dirs/my_nuscenes_dataset")
