# (b) Depth-aware teacher-student: every batch holds the 2 labeled samples of (a) and 2
# unlabeled ones (ratio 1), which the EMA teacher labels (docs/teacher_student.md; its
# settings in _base_/synthetic_semi.py). Same steps and labeled samples per step as (a).
_base_ = ["_base_/occ3d_nuscenes.py", "_base_/synthetic_scale.py", "_base_/synthetic_semi.py"]

data = dict(
    batch_size=4,
    unlabeled=dict(
        ratio=1.0,
        # Non-keyframe camera frames join the unlabeled pool from their own info file, made by
        # tools/create_data.py --unlabeled on a dataroot generated with camera sweeps
        # (data/synthetic has none):
        # infos=["data/synthetic_sweeps/infos/renderlss_infos_train_unlabeled.pkl"],
    ),
)

train = dict(
    work_dir="work_dirs/synthetic_semi_teacher",
    teacher=dict(enabled=True, depth_aware=True),
)
