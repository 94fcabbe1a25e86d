"""Depth-edge map at the feature stride, its weights and the rays' feature cells, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from renderlss.models.config import DepthBinsConfig
from renderlss.models.depth_edges import (
    depth_edge_map,
    edge_weights,
    ray_edge_weights,
    ray_feature_cells,
)
from renderlss.models.losses import lss_depth_loss


def step_images() -> torch.Tensor:
    """[2, 4, 16]: a step from 10 m to 20 m at column 6, so at stride 4 (cells of columns
    0-3, 4-7, 8-11, 12-15) the jump lies inside cell 1.

    Image 0 has invalid pixels scattered on both sides; image 1 has lost every 20 m pixel
    of cell 1 (columns 6-7) and all of cell 3, so cell 1 holds only 10 m.
    """
    depth = torch.full((2, 4, 16), 10.0)
    depth[:, :, 6:] = 20.0
    depth[0, 0, 0] = depth[0, 2, 5] = depth[0, 1, 9] = depth[0, 3, 15] = 0.0
    depth[1, :, 6:8] = 0.0
    depth[1, :, 12:] = -1.0  # negative also means no measurement
    return depth


def test_edge_map_of_a_step_with_invalid_pixels():
    depth = step_images()
    alone = depth_edge_map(depth, stride=4, radius=0, threshold=0.5)
    assert alone.tolist() == [[[False, True, False, False]], [[False, False, False, False]]]
    # With one neighbour cell on each side: image 0's cells 0 and 2 see the jump of cell 1;
    # in image 1, cells 1 and 2 see 10 m next to 20 m, cell 0 only 10 m and cell 3 (empty)
    # only cell 2's 20 m.
    near = depth_edge_map(depth, stride=4, radius=1, threshold=0.5)
    assert near.tolist() == [[[True, True, True, False]], [[False, True, True, False]]]
    # The jump is (20 - 10) / 10 = 1: strictly above the threshold only.
    assert not depth_edge_map(depth, 4, 0, threshold=1.0).any()
    assert depth_edge_map(depth, 4, 0, threshold=0.99)[0, 0, 1]


def test_edge_map_pads_partial_cells_and_checks_its_size():
    depth = step_images()[:, :, :14]  # the last cell holds columns 12-13 only
    assert depth_edge_map(depth, 4, 0, 0.5).tolist()[0] == [[False, True, False, False]]
    assert depth_edge_map(depth, 4, 0, 0.5, size=(2, 5)).shape == (2, 2, 5)
    with pytest.raises(ValueError, match="larger than"):
        depth_edge_map(depth, 4, 0, 0.5, size=(1, 3))


def test_edge_weights_and_weighted_lss_depth_loss():
    edges = depth_edge_map(step_images()[:1], 4, 0, 0.5)
    weights = edge_weights(edges, 3.0)
    assert weights.tolist() == [[[1.0, 3.0, 1.0, 1.0]]]
    # Two bins [1, 2), [2, 3); cells 0 and 1 of one image with targets 1.5 and 2.5 m and
    # p = (3/4, 1/4): CE ln(4/3) and ln 4, weighted 1 and 3.
    bins = DepthBinsConfig(mode="UD", d_min=1.0, d_max=3.0, num_bins=2)
    depth = torch.zeros(1, 4, 8)
    depth[0, 0, 0], depth[0, 0, 4] = 1.5, 2.5
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0] = math.log(3.0)
    expected = (math.log(4 / 3) + 3 * math.log(4)) / 4
    loss = lss_depth_loss(logits, depth, bins, 4, "ce", weights[..., :2])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert lss_depth_loss(logits, depth, bins, 4, "ce").item() == pytest.approx(
        (math.log(4 / 3) + math.log(4)) / 2, rel=1e-6
    )


def test_ray_feature_cells_by_hand():
    # Two cameras looking along +z of the ego frame, centres (0, 0, 0) and (5, 0, 0);
    # f = 4, principal point (8, 2) in a 16 x 4 image; camera 1's input image is the
    # original shifted 4 px right. Stride 4: one row of 4 cells per image.
    cam2ego = torch.eye(4).repeat(1, 2, 1, 1)
    cam2ego[0, 1, 0, 3] = 5.0
    intrinsic = torch.tensor([[4.0, 0.0, 8.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]]).repeat(1, 2, 1, 1)
    img_aug = torch.eye(3).repeat(1, 2, 1, 1)
    img_aug[0, 1, 0, 2] = 4.0
    origins = torch.tensor([[[0.0, 0, 0], [5.0, 0, 0], [0.0, 0, 0], [0.0, 0, 0], [2.0, 0, 0]]])
    dirs = torch.tensor(
        [
            [
                [0.5, 0.0, 1.0],  # u = 10 -> cell 2 of camera 0
                [-1.5, 0.1, 1.0],  # u = 2 + 4 (shift) = 6 -> cell 1 of camera 1
                [0.0, 0.0, -1.0],  # behind camera 0
                [3.0, 0.0, 1.0],  # u = 20: right of the image
                [0.0, 0.0, 1.0],  # starts at no camera centre (another frame)
            ]
        ]
    )
    cells = ray_feature_cells(origins, dirs, cam2ego, intrinsic, img_aug, 4, (1, 4))
    assert cells.tolist() == [[2, 4 + 1, -1, -1, -1]]
    cell_weights = torch.tensor([[[1.0, 1.0, 3.0, 1.0]], [[1.0, 5.0, 1.0, 1.0]]])
    assert ray_edge_weights(cell_weights, cells).tolist() == [[3.0, 5.0, 1.0, 1.0, 1.0]]
