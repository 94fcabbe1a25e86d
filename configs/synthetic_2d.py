# 2D supervision only on the embedded synthetic dataset: rendered depth and semantics from
# the LiDAR sweep (plus dense depth and 2D labels when built) and ray-query losses on the
# volume along the same rays; no Occ3D labels in any loss. The Occ3D labels are loaded for
# evaluation only. Same network, images, rays and step budget as the demo.
_base_ = ["_base_/occ3d_nuscenes.py", "_base_/synthetic_scale.py"]

_data_root = "data/synthetic"

model = dict(
    # Nearly transparent at the start, so that the first rays reach their surfaces.
    # Occupancy is read from the largest density inside each voxel, as the renderer meets it.
    head=dict(initial_density=0.02, occupancy_field="peak"),
    loss=dict(
        class_counts=f"{_data_root}/infos/class_counts.json",
        occ3d_weight=0.0,
        occ3d_class_counts="",
        depth_weight=1.0,
        semantic_weight=1.0,
        lss_depth_weight=1.0,
        termination_weight=0.1,
        # Voxels holding a point just behind a measured surface are occupied (with the
        # ray's class); voxels the ray crossed before it are free.
        query_weight=1.0,
        query_semantic_weight=1.0,
        query_sampling="voxel",
        query_free_margin=0.25,
        query_occupied_depth=0.25,
    ),
)

# Geometry from the density: pick the threshold on the training split
# (tools/pick_threshold.py) and pass it as eval.occupancy_threshold.
eval = dict(occupancy_rule="density")

train = dict(work_dir="work_dirs/synthetic_2d")
