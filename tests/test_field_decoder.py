"""The hash-grid field decoder: its position map, voxel and point decoding against a brute
force composition, rendering against analytic values, training, and tcnn vs torch (GPU)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import loop_overrides

from renderlss.data.info_builder import create_infos
from renderlss.engine.build import build_model
from renderlss.engine.experiment import load_experiment
from renderlss.engine.full_image import render_sample_rays
from renderlss.engine.trainer import train
from renderlss.geometry.grid import VoxelGrid
from renderlss.models.config import FieldDecoderConfig
from renderlss.models.field_decoder import FieldDecoder, voxel_centre_coordinates
from renderlss.models.fused_mlp import fused_mlp_forward, fused_mlp_matrices
from renderlss.models.hash_grid import hash_grid_encode
from renderlss.models.tcnn_backend import import_tcnn, tcnn_hash_grid_encode
from renderlss.ops.config import RenderConfig
from renderlss.ops.field import grid_coordinates
from renderlss.ops.rays import Rays
from renderlss.ops.render import render_rays, sample_volume
from renderlss.train.distributed import seed_everything

# An 8 x 4 x 2 m box of 1 m voxels: the longest side (x) spans the unit cube.
GRID = VoxelGrid(point_cloud_range=(-4.0, -2.0, -1.0, 4.0, 2.0, 1.0), voxel_size=(1.0, 1.0, 1.0))
SMALL = FieldDecoderConfig(
    enabled=True,
    levels=3,
    log2_table_size=8,
    features_per_level=2,
    base_resolution=4,
    per_level_scale=2.0,
    mlp_width=16,
    mlp_hidden_layers=2,
    backend="torch",
)
CHANNELS, CLASSES = 3, 4


def small_decoder(initial_density: float | None = None, **changes) -> FieldDecoder:
    torch.manual_seed(0)
    decoder = FieldDecoder(replace(SMALL, **changes), CHANNELS, CLASSES, GRID, initial_density)
    with torch.no_grad():  # tcnn's initial table (1e-4) would hide a wrong hash lookup
        decoder.encoding.params.normal_()
        decoder.output_bias[1:].normal_()
    return decoder


def test_positions_map_isotropically_into_the_unit_cube_and_voxel_centres_by_hand():
    decoder = small_decoder()
    # (z, y, x) = (1, 1, 1) is the box's upper corner (4, 2, 1) m: 8 m along x is the cube's
    # side, so y spans half of it and z a quarter.
    corner = decoder.unit_positions(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))
    assert corner.tolist() == [[1.0, 0.5, 0.25], [0.0, 0.0, 0.0]]
    centres = voxel_centre_coordinates((8, 4, 2), torch.device("cpu"))
    assert centres.shape == (8, 4, 2, 3)
    # Voxel (0, 3, 1): x centre -3.5 m -> -7/8, y 1.5 m -> 3/4, z 0.5 m -> 1/2, in (z, y, x).
    assert centres[0, 3, 1].tolist() == [0.5, 0.75, -0.875]


def brute_force(decoder: FieldDecoder, volume: torch.Tensor, points: torch.Tensor):
    """The decoder's formula at metric points [P, 3]: trilinear voxel features, the hash
    encoding of (p - lower) / longest side, the MLP, softplus on the density."""
    lower = torch.tensor(GRID.lower)
    longest = float(max(u - low for u, low in zip(GRID.upper, GRID.lower, strict=True)))
    features = sample_volume(volume, points[None], GRID)[0]  # [P, C]
    encoding, mlp = decoder.encoding, decoder.mlp
    encoded = hash_grid_encode((points - lower) / longest, encoding.params, encoding.layout)
    outputs = fused_mlp_forward(torch.cat([features, encoded], -1), mlp.params, mlp.layout)
    outputs = outputs + decoder.output_bias
    return F.softplus(outputs[:, 0]), outputs[:, 1:]


def test_volume_and_point_decoding_match_the_brute_force_composition():
    decoder = small_decoder(chunk_points=5)  # several chunks, one of them partial
    volume = torch.randn(2, CHANNELS, *GRID.shape)
    density, logits = decoder.decode_volume(volume)
    assert density.shape == (2, 1, 8, 4, 2) and logits.shape == (2, CLASSES, 8, 4, 2)
    x, y, z = torch.meshgrid(*(torch.arange(n) + 0.5 for n in GRID.shape), indexing="ij")
    centres = torch.stack([x, y, z], -1).reshape(-1, 3) + torch.tensor(GRID.lower)
    for b in range(2):
        sigma, values = brute_force(decoder, volume[b : b + 1], centres)
        assert torch.allclose(density[b, 0].flatten(), sigma, atol=1e-5)
        assert torch.allclose(logits[b].flatten(1).t(), values, atol=1e-5)
    points = (torch.rand(30, 3) - 0.5) * torch.tensor([7.9, 3.9, 1.9])
    field = decoder.field(volume[1:])
    sigma, values = field(grid_coordinates(points, GRID).view(5, 6, 3))
    expected_sigma, expected_values = brute_force(decoder, volume[1:], points)
    assert sigma.shape == (5, 6) and values.shape == (5, 6, CLASSES)
    assert torch.allclose(sigma.flatten(), expected_sigma, atol=1e-5)
    assert torch.allclose(values.flatten(0, 1), expected_values, atol=1e-5)


def test_render_with_a_constant_density_decoder_is_analytic():
    """sigma = initial_density everywhere (zero density weights, bias softplus^-1), logits
    linear in the voxel features (no hash features, non-negative first layer on features >=
    0 keeps ReLU the identity): opacity and depth in closed form, semantics those of the
    logits volume W f + b rendered by the default trilinear path."""
    sigma = 0.3
    decoder = small_decoder(initial_density=sigma)
    with torch.no_grad():
        decoder.encoding.params.zero_()
        first, hidden, last = fused_mlp_matrices(decoder.mlp.params, decoder.mlp.layout)
        first.abs_()
        hidden.abs_()
    volume = torch.rand(1, CHANNELS, *GRID.shape)
    origins = torch.tensor([[[-6.0, 0.3, 0.2], [-6.0, -1.2, -0.4]]])
    dirs = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    rays = Rays(origins, dirs, torch.ones(1, 2))
    config = RenderConfig(step_fraction=0.5, jitter=False, early_stop_eps=0.0)
    rendered = render_rays(None, None, rays, GRID, config, False, field=[decoder.field(volume)])

    # The box from t = 2 to 10 m in 16 steps of 0.5 m, samples at the midpoints.
    step, count = 0.5, 16
    weights = [math.exp(-sigma * step * i) * (1 - math.exp(-sigma * step)) for i in range(count)]
    depth = sum(w * (2.0 + (i + 0.5) * step) for i, w in enumerate(weights))
    assert rendered.opacity[0].tolist() == pytest.approx([1 - math.exp(-sigma * 8.0)] * 2)
    assert rendered.depth[0].tolist() == pytest.approx([depth] * 2, rel=1e-5)

    first, hidden, last = fused_mlp_matrices(decoder.mlp.params.detach(), decoder.mlp.layout)
    linear = last[1 : 1 + CLASSES] @ hidden @ first[:, :CHANNELS]  # [K, C]
    logits_volume = torch.einsum("kc,bcxyz->bkxyz", linear, volume)
    logits_volume = logits_volume + decoder.output_bias[1:, None, None, None].detach()
    density_volume = torch.full((1, 1, *GRID.shape), sigma)
    reference = render_rays(density_volume, logits_volume, rays, GRID, config, False)
    assert torch.allclose(rendered.semantics, reference.semantics, atol=1e-4)


@pytest.fixture(scope="module")
def infos(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


def test_two_training_steps_with_the_field_decoder(infos, tmp_path):
    overrides = loop_overrides(
        infos,
        tmp_path,
        "train.max_steps=2",
        "model.field_decoder.enabled=True",
        "model.field_decoder.levels=4",
        "model.field_decoder.log2_table_size=12",
        "model.field_decoder.mlp_width=16",
    )
    config = load_experiment("configs/synthetic_demo.py", overrides)
    result = train(config, log=lambda line: None)
    assert result.step == 2 and len(result.history) == 2
    assert all(math.isfinite(record["loss"]) for record in result.history)
    model = result.model
    assert model.head is None
    state = model.state_dict()
    for name in ("field_decoder.encoding.params", "field_decoder.mlp.params"):
        assert name in state
    seed_everything(config.train.seed)  # as the trainer does before it builds the model
    start = build_model(config).state_dict()
    for name in ("field_decoder.encoding.params", "field_decoder.mlp.params"):
        assert not torch.equal(start[name], state[name]), f"{name} was trained"

    # The model renders the decoder at the samples, not its voxel volumes (zeros here).
    model.eval()
    grid = config.data.grid
    features = torch.rand(1, config.model.encoder3d.channels, *grid.shape)
    predictions = dict(
        density=torch.zeros(1, 1, *grid.shape),
        logits=torch.zeros(1, config.model.head.num_classes, *grid.shape),
        features=features,
    )
    rays = dict(
        origins=torch.tensor([[[0.0, 0.0, 1.5], [1.0, 2.0, 1.0]]]),
        dirs=F.normalize(torch.tensor([[[1.0, 0.2, -0.1], [0.3, 1.0, -0.2]]]), dim=-1),
        z_per_t=torch.ones(1, 2),
    )
    with torch.no_grad():
        rendered = model.render(predictions, rays)
        fields = [model.field_decoder.field(features)]
        expected = render_rays(
            None,
            None,
            Rays(rays["origins"], rays["dirs"], rays["z_per_t"]),
            grid,
            config.render,
            False,
            field=fields,
        )
    assert rendered.opacity.min() > 0
    assert torch.allclose(rendered.depth, expected.depth)
    assert torch.allclose(rendered.semantics, expected.semantics)
    # Full-image rendering hands the features of its batch element on.
    one_ray = {name: value[0] for name, value in rays.items()}
    with torch.no_grad():
        image_rays = render_sample_rays(model, predictions, 0, one_ray)
    assert torch.allclose(image_rays.depth, expected.depth)


@pytest.mark.skipif(import_tcnn() is not None, reason="tinycudann imports here")
def test_the_tcnn_backend_names_what_is_missing():
    with pytest.raises(
        RuntimeError, match="model.field_decoder.backend: backend 'tcnn' needs tinycudann"
    ):
        small_decoder(backend="tcnn")


@pytest.mark.skipif(
    not torch.cuda.is_available() or import_tcnn() is None, reason="needs CUDA and tinycudann"
)
def test_tcnn_matches_torch_on_the_same_parameters():
    torch.manual_seed(0)
    config = FieldDecoderConfig(enabled=True, backend="torch", mlp_width=64)
    decoder = FieldDecoder(config, 16, 18, GRID).cuda()
    with torch.no_grad():
        decoder.encoding.params.normal_(0.0, 0.1)
    features = torch.randn(2**18, 16, device="cuda")
    coords = torch.rand(2**18, 3, device="cuda") * 2 - 1

    def run(backend: str):
        decoder.backend = backend
        decoder.zero_grad()
        sigma, logits = decoder.decode(features, coords)
        (sigma.sum() + logits.square().sum() * 1e-2).backward()
        grads = [p.grad.clone() for p in (decoder.encoding.params, decoder.mlp.params)]
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            decoder.decode(features, coords)[0].sum().backward()
        torch.cuda.synchronize()
        return sigma, logits, grads, (time.perf_counter() - start) / 5

    positions = decoder.unit_positions(coords)
    encoded = tcnn_hash_grid_encode(positions, decoder.encoding.params, decoder.encoding.layout)
    expected = hash_grid_encode(positions, decoder.encoding.params, decoder.encoding.layout)
    assert torch.allclose(encoded, expected, atol=1e-5)  # both in float32
    sigma_t, logits_t, grads_t, seconds_t = run("torch")
    sigma_c, logits_c, grads_c, seconds_c = run("tcnn")
    print(
        f"field decoder forward + backward of 2^18 points: torch {seconds_t * 1e3:.1f} ms, "
        f"tcnn {seconds_c * 1e3:.1f} ms"
    )
    # FullyFusedMLP computes in half precision.
    assert torch.allclose(sigma_c, sigma_t, rtol=2e-2, atol=2e-2)
    assert torch.allclose(logits_c, logits_t, rtol=2e-2, atol=2e-2)
    for grad_c, grad_t in zip(grads_c, grads_t, strict=True):
        cosine = F.cosine_similarity(grad_c.flatten(), grad_t.flatten(), dim=0)
        assert cosine > 0.99
