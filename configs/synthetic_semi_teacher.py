# (b) Depth-aware teacher-student: every batch holds the 2 labeled samples of (a) and 2
# unlabeled ones (ratio 1), which the EMA teacher labels (docs/teacher_student.md; its
# settings in _base_/synthetic_semi.py). Same steps and labeled samples per step as (a).
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
]

data = dict(
    batch_size=4,
    unlabeled=dict(
        ratio=1.0,
        # The non-keyframe camera frames of the training scenes join the unlabeled keyframes
        # (tools/create_data.py --unlabeled).
        infos=["data/synthetic_semi/infos/renderlss_infos_train_unlabeled.pkl"],
    ),
)

train = dict(
    work_dir="work_dirs/synthetic_semi_teacher",
    teacher=dict(enabled=True, depth_aware=True),
)
