# The teacher-student rows of the semi-supervised experiment (docs/teacher_student.md): every
# batch holds the 2 labeled samples of (a) and 2 unlabeled ones (ratio 1), which the EMA
# teacher labels. The non-keyframe camera frames of the training scenes join the unlabeled
# keyframes (tools/create_data.py --unlabeled).
data = dict(
    batch_size=4,
    unlabeled=dict(
        ratio=1.0,
        infos=["data/synthetic_semi/infos/renderlss_infos_train_unlabeled.pkl"],
    ),
)

train = dict(teacher=dict(enabled=True))
