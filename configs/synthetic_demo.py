# The demo: the small synthetic-scale network (configs/_base_/synthetic_scale.py) trained
# with RenderOcc's "2D + 3D" losses on the embedded synthetic dataset, on CPU.
_base_ = ["_base_/occ3d_nuscenes.py", "_base_/synthetic_scale.py"]

_data_root = "data/synthetic"

model = dict(
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

# The 3D loss trains the class logits including free, so occupancy is their argmax.
eval = dict(occupancy_rule="logits")

train = dict(work_dir="work_dirs/synthetic_demo")
