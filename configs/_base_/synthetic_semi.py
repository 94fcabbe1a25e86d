# The semi-supervised experiment on the embedded synthetic dataset (docs/teacher_student.md):
# the demo's network, losses and step budget (configs/synthetic_demo.py; a test keeps the two
# equal), with the keyframes of a share of the training scenes treated as unlabeled. The
# experiment configs (configs/synthetic_semi_*.py) choose what the unlabeled frames do.
_data_root = "data/synthetic"

data = dict(
    # data/synthetic has 3 training scenes and the choice is by scene: 0.75 leaves
    # round(0.75 * 3) = 2 scenes unlabeled, so 1 scene (10 of 30 keyframes, 33 %) keeps its
    # labels; 25 % by scene needs a multiple of 4 training scenes.
    unlabeled=dict(keyframe_fraction=0.75, seed=0),
)

model = dict(
    # The demo's "2D + 3D" losses.
    loss=dict(
        class_counts=f"{_data_root}/infos/class_counts.json",
        occ3d_weight=1.0,
        occ3d_class_counts=f"{_data_root}/infos/voxel_class_counts.json",
        depth_weight=0.1,
        semantic_weight=0.1,
        lss_depth_weight=1.0,
    ),
)

eval = dict(occupancy_rule="logits")

train = dict(
    # The teacher of (b) and (b'), off unless an experiment turns it on.
    teacher=dict(
        enabled=False,
        # m(step) = min(0.99, 1 - 11 / (step + 11)): 0.95 at step 200, 0.98 at step 500.
        momentum_warm_steps=10,
        max_momentum=0.99,
        # The demo network reaches its first useful volumes after ~150 steps.
        start_step=150,
        ramp_steps=100,
        # A 500-step network is rarely 90 % sure of a class; watch train/teacher/kept_share.
        confidence_threshold=0.6,
        opacity_threshold=0.7,
        # The supervised terms' weights of the demo: rendering at 0.1, the 3D term leading.
        pseudo_depth_weight=0.1,
        pseudo_semantic_weight=0.1,
        pseudo_voxel_weight=0.5,
        voxel_confidence_threshold=0.7,
    ),
)
