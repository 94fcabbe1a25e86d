# The demo: the small synthetic-scale network (configs/_base_/synthetic_scale.py) trained
# with RenderOcc's "2D + 3D" losses (configs/_base_/losses_2d_3d.py) on the embedded
# synthetic dataset, on CPU.
_base_ = ["_base_/occ3d_nuscenes.py", "_base_/synthetic_scale.py", "_base_/losses_2d_3d.py"]

_data_root = "data/synthetic"

# Class weights from tools/class_frequencies.py (the demo writes both files first).
model = dict(
    loss=dict(
        class_counts=f"{_data_root}/infos/class_counts.json",
        occ3d_class_counts=f"{_data_root}/infos/voxel_class_counts.json",
    ),
)

train = dict(work_dir="work_dirs/synthetic_demo")
