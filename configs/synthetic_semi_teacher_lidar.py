# (b+) The teacher-student run of (b) with the unlabeled frames' LiDAR depth maps kept as the
# student's lifting-depth target (lss_depth) and no 3D pseudo labels: the setting that
# recovers the (a)->(c) gap at 500 steps, most of it through the LiDAR target alone
# (docs/teacher_student.md, "Results at 500 steps").
_base_ = [
    "_base_/occ3d_nuscenes.py",
    "_base_/synthetic_scale.py",
    "_base_/losses_2d_3d.py",
    "_base_/synthetic_semi.py",
    "_base_/synthetic_semi_unlabeled.py",
]

train = dict(
    work_dir="work_dirs/synthetic_semi_teacher_lidar",
    teacher=dict(depth_aware=True, pseudo_voxel_weight=0.0, lifting_depth_on_unlabeled=True),
)
