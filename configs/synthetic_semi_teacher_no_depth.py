# (b') Teacher-student as (b) without depth awareness: the teacher lifts with its own depth
# distribution and its rendered depth is the depth target on every kept ray; the unlabeled
# frames' LiDAR depth is not used at all.
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
    "_base_/synthetic_semi_unlabeled.py",
]

train = dict(
    work_dir="work_dirs/synthetic_semi_teacher_no_depth",
    teacher=dict(depth_aware=False),
)
