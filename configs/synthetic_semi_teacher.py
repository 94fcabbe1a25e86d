# (b) Depth-aware teacher-student: the labeled samples of (a) and as many unlabeled ones per
# batch (_base_/synthetic_semi_unlabeled.py; the teacher's settings in _base_/synthetic_semi.py).
# Same steps and labeled samples per step as (a).
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
    "_base_/synthetic_semi_unlabeled.py",
]

train = dict(
    work_dir="work_dirs/synthetic_semi_teacher",
    teacher=dict(depth_aware=True),
)
