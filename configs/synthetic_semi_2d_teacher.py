# (b) of the 2D-only semi-supervised rows: frames without lidarseg keep their LiDAR depth, a
# measurement, for every depth term (rendered depth, ray queries, lifting), and the
# depth-aware EMA teacher gives their rays' classes, at the weight of the supervised semantic
# term. Depth-aware, its pseudo depth would be the same LiDAR depth again, so it is off.
# The teacher starts at step 200 of the 500-step runs (full weight from step 300): its
# classes from step 60 on recovered 24 % of the (a)->(c) mIoU gap, from step 200 on 90 %
# (docs/teacher_student.md, two seeds).
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d.py",
    "_base_/synthetic_semi.py",
    "_base_/synthetic_semi_unlabeled.py",
]

train = dict(
    work_dir="work_dirs/synthetic_semi_2d_teacher",
    max_steps=500,
    teacher=dict(
        depth_aware=True,
        lifting_depth_on_unlabeled=True,
        ray_depth_on_unlabeled=True,
        pseudo_depth_weight=0.0,
        pseudo_semantic_weight=1.0,
        pseudo_voxel_weight=0.0,
        start_step=200,
        ramp_steps=100,
    ),
)
