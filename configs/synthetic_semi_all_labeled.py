# (c) Upper bound: every training keyframe labeled; the demo itself, in its own work dir.
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
]

data = dict(unlabeled=dict(keyframe_fraction=0.0))

train = dict(work_dir="work_dirs/synthetic_semi_all_labeled")
