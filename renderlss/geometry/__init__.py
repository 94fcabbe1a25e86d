"""Geometry in one convention: metres; ego x forward, y left, z up; camera x right, y down,
z forward; depth is camera z. Pose chains are computed in float64."""

from renderlss.geometry.camera import (
    nearest_depth_image,
    nearest_per_pixel,
    pixel_grid,
    project_to_image,
    unproject_pixels,
)
from renderlss.geometry.intrinsics import (
    centre_convention_intrinsic,
    corner_convention_intrinsic,
    validated_intrinsic,
)
from renderlss.geometry.transforms import (
    compose,
    invert_pose,
    matrix_to_quaternion,
    pose_matrix,
    quaternion_to_matrix,
    transform_points,
    yaw_of_quaternion,
    yaw_to_quaternion,
)

__all__ = [
    "centre_convention_intrinsic",
    "compose",
    "corner_convention_intrinsic",
    "invert_pose",
    "matrix_to_quaternion",
    "nearest_depth_image",
    "nearest_per_pixel",
    "pixel_grid",
    "pose_matrix",
    "project_to_image",
    "quaternion_to_matrix",
    "transform_points",
    "unproject_pixels",
    "validated_intrinsic",
    "yaw_of_quaternion",
    "yaw_to_quaternion",
]
