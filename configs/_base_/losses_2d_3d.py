# RenderOcc's "2D + 3D" setting: the Occ3D loss (inside the camera mask) leads and the
# rendering losses help at a small weight (at weight 1 they hurt once 3D labels exist).
# The LiDAR depth loss on the depth distribution at full weight: a network trained from
# scratch for minutes needs it to place features along the rays (at 0.05 the demo stayed
# below the column-majority baseline after 300 steps; docs/demo.md).
# The config names its class-count files (model.loss.class_counts, occ3d_class_counts),
# written by tools/class_frequencies.py.
model = dict(
    loss=dict(
        occ3d_weight=1.0,
        depth_weight=0.1,
        semantic_weight=0.1,
        lss_depth_weight=1.0,
    ),
)

# The 3D loss trains the class logits including free, so occupancy is their argmax.
eval = dict(occupancy_rule="logits")
