# (a) Semi-supervised baseline: the labeled scene's keyframes alone (ratio 0 leaves the
# unlabeled keyframes out); the demo's step budget.
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
]

data = dict(unlabeled=dict(ratio=0.0))

train = dict(work_dir="work_dirs/synthetic_semi_labeled_only")
