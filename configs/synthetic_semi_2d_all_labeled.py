# (c) of the 2D-only semi-supervised rows: every training keyframe with its lidarseg classes.
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d.py",
    "_base_/synthetic_semi.py",
]

data = dict(unlabeled=dict(keyframe_fraction=0.0))

# The 2D-only rows are measured at 500 steps (docs/teacher_student.md).
train = dict(work_dir="work_dirs/synthetic_semi_2d_all_labeled", max_steps=500)
