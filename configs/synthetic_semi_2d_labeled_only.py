# (a) of the 2D-only semi-supervised rows (docs/teacher_student.md): the losses of
# configs/synthetic_2d.py (LiDAR depth and lidarseg classes along rays, ray queries; no Occ3D
# label in any loss) on the labeled scenes' keyframes alone.
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d.py",
    "_base_/synthetic_semi.py",
]

data = dict(unlabeled=dict(ratio=0.0))

# The 2D-only rows are measured at 500 steps (docs/teacher_student.md).
train = dict(work_dir="work_dirs/synthetic_semi_2d_labeled_only", max_steps=500)
