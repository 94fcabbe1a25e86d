# The semi-supervised experiment (docs/teacher_student.md): the demo's network and "2D + 3D"
# losses (configs/synthetic_demo.py; a test keeps them equal) on a synthetic dataroot with
# camera sweeps, with the keyframes of a share of the training scenes treated as unlabeled.
# The experiment configs (configs/synthetic_semi_*.py) choose what the unlabeled frames do.
# The dataroot (8 scenes of 8 keyframes, every 12 Hz camera frame; docs/teacher_student.md):
#   python tools/make_synthetic.py --out data/synthetic_semi --scenes 8 --keyframes 8 \
#       --camera-sweeps --seed 1 --grid -25.6 -25.6 -1.0 25.6 25.6 5.4 0.8
#   python tools/create_data.py --dataroot data/synthetic_semi --version v1.0-synthetic \
#       --out-dir data/synthetic_semi/infos --unlabeled
_data_root = "data/synthetic_semi"

data = dict(
    train_infos=f"{_data_root}/infos/renderlss_infos_train.pkl",
    val_infos=f"{_data_root}/infos/renderlss_infos_val.pkl",
    # 6 training scenes, chosen by scene: 0.75 leaves round(4.5) = 4 scenes unlabeled, so 2
    # scenes (16 of 48 keyframes, 33 %) keep their labels.
    unlabeled=dict(keyframe_fraction=0.75, seed=0),
)

# The demo's "2D + 3D" losses (configs/_base_/losses_2d_3d.py), with this dataroot's class
# counts (tools/class_frequencies.py on its training keyframes).
model = dict(
    loss=dict(
        class_counts=f"{_data_root}/infos/class_counts.json",
        occ3d_class_counts=f"{_data_root}/infos/voxel_class_counts.json",
    ),
)

train = dict(
    # 200 steps per row (four rows, two seeds: about an hour on two CPU cores, one run per
    # core); every row is scored after training with tools/test.py on the held-out scenes.
    max_steps=200,
    checkpoint_interval=50,
    eval_interval=0,
    image_interval=0,
    # The teacher of (b) and (b'), off unless an experiment turns it on.
    teacher=dict(
        enabled=False,
        # m(step) = min(0.99, 1 - 11 / (step + 11)): 0.85 at step 60, 0.95 at step 200.
        momentum_warm_steps=10,
        max_momentum=0.99,
        # Pseudo labels from step 60, just after the 50 warm-up steps, at full weight from
        # step 120: a teacher that has trained on the labeled frames for a while.
        start_step=60,
        ramp_steps=60,
        # A 200-step network is rarely 90 % sure of a class; watch train/teacher/kept_share.
        confidence_threshold=0.6,
        opacity_threshold=0.7,
        # The supervised terms' weights of the demo: rendering at 0.1, the 3D term leading.
        pseudo_depth_weight=0.1,
        pseudo_semantic_weight=0.1,
        pseudo_voxel_weight=0.5,
        voxel_confidence_threshold=0.7,
    ),
)
