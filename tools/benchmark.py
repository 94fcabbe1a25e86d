#!/usr/bin/env python
"""Measure renderlss: speed and peak memory of its parts against naive references.

Every case runs in a fresh process so that its peak resident memory (CPU) or peak allocated
memory (CUDA) is its own. Ratios are only meaningful between cases of one run: shared
machines are noisy. Results print as a table and are written to a JSON file.

Sections (``--only``):
  synthetic  seconds to generate one synthetic keyframe (demo resolution and 1600x900)
  data       Dataset samples/s with 0 and 2 loader workers on a generated synthetic dataroot
             (per scale: the paper scale draws 38,400 rays from the keyframe and +-3 neighbours)
  splat      splat variants vs the LSS cumsum-trick splat (forward + backward), including the
             compiled segment sum of cuda/ (model.splat_kernel="auto")
  render     the renderer (box clipping + early termination) vs dense sampling of every step,
             and the packed, empty-space-skipping sampler (render.sampler="packed") with its
             depth difference to the default sampler (--render-volume: a trained volume)
  model      one forward + backward of the whole network
  memory     resident memory over a long CPU training run (host-memory leaks)
Scales (``--scales``): demo (configs/synthetic_demo.py) and paper (configs/renderocc_r50_occ3d.py).

``--profile``: instead of the sections, one training step per scale (data loading of one
sample from a generated synthetic dataroot, forward, losses, backward) under torch.profiler,
as a table of where the time goes (the model's named ranges; backward time goes to the
stage whose forward op made the autograd node; the renderer's parts by the function that
issued each op).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from renderlss.train.memory import peak_memory_mb

ROOT = Path(__file__).resolve().parents[1]
SCALE_CONFIGS = {
    "demo": ROOT / "configs" / "synthetic_demo.py",
    "paper": ROOT / "configs" / "renderocc_r50_occ3d.py",
}


# --------------------------------------------------------------------------- measurement


def timed(fn, device: torch.device, repeats: int) -> dict:
    """Median wall time of ``fn()`` over ``repeats`` runs after two warm-ups (oneDNN and the
    allocator settle on new shapes), and the peak memory it added on top of what existed
    before the warm-ups."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        base = peak_memory_mb(device)
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return dict(
        seconds=statistics.median(times),
        peak_extra_mb=round(peak_memory_mb(device) - base, 1),
        repeats=repeats,
    )


def _child(queue, case: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    try:
        queue.put(CASES[case](**kwargs))
    except Exception as err:  # report the failure of one case instead of losing the run
        queue.put(dict(error=f"{type(err).__name__}: {err}"))


def run_isolated(case: str, **kwargs) -> dict:
    """Run ``CASES[case](**kwargs)`` in a fresh process and return its result dict."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, case, kwargs))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# --------------------------------------------------------------------------- inputs


def load_scale(scale: str):
    from renderlss.engine.experiment import load_experiment

    return load_experiment(SCALE_CONFIGS[scale])


def feature_shape(config) -> tuple[int, int, int, int]:
    """(N cameras, D bins, h, w) of the lifted frustum for a config."""
    from renderlss.models.neck import output_size

    stride = config.model.neck.out_stride
    h, w = output_size(config.data.input_size, 1, stride)
    return len(config.data.cameras), config.model.depth.bins.num_bins, h, w


def rig_batch(config, device: torch.device) -> dict:
    """Camera inputs of one sample: the nuScenes-like rig at 1600x900, resized and bottom-
    cropped to the config's input size as the Dataset does in eval mode."""
    from renderlss.data.augment import image_aug_matrix, sample_image_aug
    from renderlss.synthetic.rig import camera_rig

    cams = camera_rig(1600, 900, 20.0)
    params = sample_image_aug((900, 1600), config.data.input_size, config.data.image_aug, None)
    aug = image_aug_matrix(params, (900, 1600), config.data.input_size)
    as_t = lambda a: torch.as_tensor(np.stack(a), dtype=torch.float32, device=device)[None]  # noqa: E731
    return dict(
        intrinsic=as_t([c.intrinsic for c in cams]),
        img_aug=as_t([aug] * len(cams)),
        cam2ego=as_t([c.ego_from_cam for c in cams]),
    )


def random_rays(config, num_rays: int, device: torch.device) -> dict:
    """Rays from the camera height in random directions, pointing slightly down."""
    gen = torch.Generator().manual_seed(1)
    dirs = torch.randn(1, num_rays, 3, generator=gen)
    dirs[..., 2] = -dirs[..., 2].abs() * 0.2
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = torch.tensor([1.0, 0.0, 1.5]).expand(1, num_rays, 3).clone()
    z_per_t = torch.rand(1, num_rays, generator=gen) * 0.4 + 0.6
    return {k: v.to(device) for k, v in dict(origins=origins, dirs=dirs, z_per_t=z_per_t).items()}


def random_field(config, device: torch.device, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Density (sparse blobs over a ground layer, as a trained volume looks) and logits."""
    x, y, z = config.data.grid.shape
    gen = torch.Generator().manual_seed(2)
    density = torch.nn.functional.softplus(torch.randn(1, 1, x, y, z, generator=gen) * 3 - 4)
    density[..., :2] += 5.0
    logits = torch.randn(1, classes, x, y, z, generator=gen)
    return density.to(device), logits.to(device)


# --------------------------------------------------------------------------- cases


def case_splat(scale: str, variant: str, device: str, repeats: int) -> dict:
    from renderlss.models.depth_bins import bin_centers
    from renderlss.ops.compiled import splat_extension
    from renderlss.ops.frustum import frustum_points
    from renderlss.ops.reference import splat_cumsum_reference
    from renderlss.ops.splat import plan_splat, splat, splat_depth_context, splat_planned

    dev = torch.device(device)
    config = load_scale(scale)
    grid = config.data.grid
    n, d, h, w = feature_shape(config)
    c = config.model.depth.context_channels
    cams = rig_batch(config, dev)
    centers = bin_centers(config.model.depth.bins)
    points = frustum_points(
        centers.to(dev),
        (h, w),
        config.model.neck.out_stride,
        cams["img_aug"],
        cams["intrinsic"],
        cams["cam2ego"],
    )
    depth = torch.randn(1, n, d, h, w, device=dev).softmax(2).requires_grad_()
    context = torch.randn(1, n, c, h, w, device=dev, requires_grad=True)

    def features():
        return depth.unsqueeze(-1) * context.permute(0, 1, 3, 4, 2).unsqueeze(2)

    run = {
        "splat": lambda: splat(features(), points, grid),
        "splat_depth_context": lambda: splat_depth_context(depth, context, points, grid),
        "splat_depth_context_compiled": lambda: splat_depth_context(
            depth, context, points, grid, kernel="auto"
        ),
        # The plan (sorting by voxel) made once outside the timed step: the segment sum alone.
        "splat_planned": lambda: splat_planned(depth, context, plan),
        "splat_planned_compiled": lambda: splat_planned(depth, context, plan, kernel="auto"),
        "cumsum_reference": lambda: splat_cumsum_reference(features(), points, grid),
    }[variant]

    plan = plan_splat(points, grid)
    if variant.endswith("_compiled") and splat_extension("auto", dev) is None:
        raise RuntimeError("no compiled splat kernel here (see the log line above)")

    def step():
        run().sum().backward()

    result = timed(step, dev, repeats)
    result.update(points=int(points[..., 0].numel()), channels=c, grid=list(grid.shape))
    return result


def render_inputs(
    config, volume: str, device: torch.device
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Rays, density and logits of the render cases: random ones, or those saved in a torch
    file ``volume`` (density [1, 1, X, Y, Z], logits [1, K, X, Y, Z], origins/dirs [1, R, 3],
    z_per_t [1, R]: e.g. a trained network's volume and a sample's target rays)."""
    if not volume:
        rays = random_rays(config, config.data.targets.num_rays, device)
        return rays, *random_field(config, device, config.model.head.num_classes)
    saved = torch.load(volume, map_location=device, weights_only=True)
    rays = {k: saved[k].float() for k in ("origins", "dirs", "z_per_t")}
    return rays, saved["density"].float(), saved["logits"].float()


def case_render(
    scale: str, variant: str, device: str, repeats: int, train: bool, volume: str = ""
) -> dict:
    import dataclasses

    from renderlss.ops.rays import Rays
    from renderlss.ops.reference import render_dense_reference
    from renderlss.ops.render import render_rays

    dev = torch.device(device)
    config = load_scale(scale)
    grid = config.data.grid
    rays_d, density, logits = render_inputs(config, volume, dev)
    rays = Rays(rays_d["origins"], rays_d["dirs"], rays_d["z_per_t"])
    density.requires_grad_(train)
    logits.requires_grad_(train)
    step = config.render.step_fraction * min(grid.voxel_size)
    render_config = config.render
    if variant == "render_rays_packed":
        render_config = dataclasses.replace(config.render, sampler="packed")
    samples = {}

    def run():
        if variant == "dense_reference":
            out = render_dense_reference(density, logits, rays, grid, step)
        else:
            out = render_rays(density, logits, rays, grid, render_config, training=train)
        samples["n"] = (
            int(out.num_samples) if variant != "dense_reference" else int(out.weights.numel())
        )
        if train:
            (out.depth.sum() + out.semantics.sum()).backward()
        return out

    ctx = torch.enable_grad() if train else torch.no_grad()
    with ctx:
        result = timed(run, dev, repeats)
    result.update(rays=rays.origins.shape[1], samples=samples["n"], train=train)
    if variant == "render_rays_packed":
        # Midpoint renders of both samplers: the depth change the packed sampler makes.
        with torch.no_grad():
            ours, dense = (
                render_rays(density, logits, rays, grid, c, training=False)
                for c in (render_config, config.render)
            )
        change = (ours.depth - dense.depth).abs() / dense.depth.abs().clamp(min=1e-3)
        result.update(
            depth_change_rel_max=float(change.max()), depth_change_rel_mean=float(change.mean())
        )
    return result


def case_model(scale: str, device: str, repeats: int) -> dict:
    from renderlss.engine.build import build_model
    from renderlss.models.objective import loss_terms

    dev = torch.device(device)
    config = load_scale(scale)
    model = build_model(config).to(dev).train()
    n = len(config.data.cameras)
    h, w = config.data.input_size
    batch = rig_batch(config, dev)
    batch["img"] = torch.randn(1, n, 3, h, w, device=dev)
    rays = random_rays(config, config.data.targets.num_rays, dev)
    r = config.data.targets.num_rays
    classes = config.data.classes
    image_depth = torch.zeros(1, n, h, w, device=dev)
    image_depth[..., ::7, ::5] = torch.rand_like(image_depth[..., ::7, ::5]) * 40 + 2
    rays.update(
        depth=torch.rand(1, r, device=dev) * 30 + 2,
        semantics=torch.randint(0, classes.free_index, (1, r), device=dev, dtype=torch.uint8),
        confidence=torch.ones(1, r, device=dev),
        image_depth=image_depth,
    )
    batch["targets"] = rays
    x, y, z = config.data.grid.shape
    batch["voxel_semantics"] = torch.randint(0, classes.num_classes, (1, x, y, z), device=dev)
    batch["mask_camera"] = torch.rand(1, x, y, z, device=dev) < 0.3

    def step():
        model.zero_grad(set_to_none=True)
        predictions, rendered = model(batch)
        terms = loss_terms(
            predictions,
            rendered,
            batch,
            config.model,
            {},
            config.data.classes.ignore_index,
            config.data.grid,
        )
        sum(terms.values()).backward()

    result = timed(step, dev, repeats)
    result.update(
        parameters=sum(p.numel() for p in model.parameters()),
        input=[n, 3, h, w],
        grid=list(config.data.grid.shape),
        rays=r,
    )
    return result


def case_synthetic(width: int, height: int) -> dict:
    from renderlss.synthetic.config import SyntheticConfig
    from renderlss.synthetic.generate import time_keyframe

    return time_keyframe(SyntheticConfig(width=width, height=height))


def data_overrides(dataroot: str, infos: str, workers: int) -> list[str]:
    """Overrides that point a scale's config at a generated synthetic dataroot."""
    return [
        f"data.dataroot={dataroot!r}",
        "data.load_occ=True",
        f"data.train_infos={infos!r}",
        "data.batch_size=1",
        f"data.workers={workers}",
        "data.targets.sources=['lidar']",
        "model.loss.class_counts=''",
        "model.loss.occ3d_class_counts=''",
    ]


def jpeg_decode_seconds(cameras: int, size: tuple[int, int], repeats: int = 5) -> float:
    """CPU seconds to decode and resize one sample's ``cameras`` 1600x900 JPEGs (nuScenes'
    size; the synthetic images are smaller, so this is what a real dataroot adds per
    sample)."""
    import cv2

    gen = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(gen.integers(0, 256, (900, 1600, 3), dtype=np.uint8), (9, 9), 3)
    encoded = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    start = time.process_time()
    for _ in range(repeats * cameras):
        cv2.resize(cv2.imdecode(encoded, cv2.IMREAD_COLOR), (size[1], size[0]))
    return (time.process_time() - start) / repeats


def case_data(scale: str, dataroot: str, infos: str, workers: int, samples: int) -> dict:
    from renderlss.data.training_set import make_training_loader
    from renderlss.engine.experiment import load_experiment
    from renderlss.train.distributed import DistInfo

    config = load_experiment(SCALE_CONFIGS[scale], data_overrides(dataroot, infos, workers))
    one_process = DistInfo(0, 1, 0, torch.device("cpu"), False)
    loader = make_training_loader(config.data, 0, one_process).loader
    seen, start = 0, None
    while seen < samples:
        for _ in loader:
            seen += 1
            if seen == 1:
                start = time.perf_counter()  # exclude worker start-up
                cpu_start = time.process_time()
            if seen >= samples:
                break
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    targets = config.data.targets
    return dict(
        workers=workers,
        samples=samples - 1,
        samples_per_s=(samples - 1) / seconds,
        # With workers=0 the loading runs in this process: its CPU time per sample is what
        # one loader worker needs on a core of its own, however busy the machine is.
        cpu_s_per_sample=round(cpu_seconds / (samples - 1), 4) if workers == 0 else None,
        rays=targets.num_rays,
        adjacent_keyframes=targets.adjacent_keyframes,
        input=list(config.data.input_size),
        jpeg_1600x900_s_per_sample=round(
            jpeg_decode_seconds(len(config.data.cameras), config.data.input_size), 4
        ),
    )


def case_memory(steps: int, workers: int) -> dict:
    """Resident memory of a CPU training run of a small demo-like config over many steps."""
    from renderlss.data.info_builder import create_infos
    from renderlss.engine.experiment import load_experiment
    from renderlss.engine.trainer import train
    from renderlss.synthetic.config import SyntheticConfig
    from renderlss.synthetic.generate import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        synthetic = SyntheticConfig(num_scenes=2, keyframes_per_scene=4, width=200, height=112)
        generate_dataset(root, synthetic, progress=False)
        create_infos(str(root), "v1.0-synthetic", str(root / "infos"), show_progress=False)
        config = load_experiment(
            SCALE_CONFIGS["demo"],
            [
                f"data.train_infos={str(root / 'infos' / 'renderlss_infos_train.pkl')!r}",
                f"train.work_dir={str(Path(tmp) / 'work')!r}",
                f"train.max_steps={steps}",
                f"train.checkpoint_interval={steps}",
                f"data.workers={workers}",
                "data.load_occ=False",
                "data.input_size=(64,112)",
                "data.targets.num_rays=512",
                "model.loss.class_counts=''",
                "model.loss.occ3d_weight=0.0",
                "model.loss.occ3d_class_counts=''",
                "train.log_interval=1000000",
                # Self-contained: no validation on the demo config's dataset.
                "data.val_infos=''",
                "train.eval_interval=0",
                "train.image_interval=0",
            ],
        )
        result = train(config, log=lambda line: None)
    rss = [r["rss_mb"] for r in result.history]
    tenth = max(1, steps // 10)
    early, late = statistics.mean(rss[tenth : 2 * tenth]), statistics.mean(rss[-tenth:])
    return dict(
        steps=steps,
        workers=workers,
        rss_start_mb=round(rss[0], 1),
        rss_early_mb=round(early, 1),
        rss_end_mb=round(late, 1),
        growth_mb_per_1k_steps=round((late - early) / max(1, steps - 2 * tenth) * 1000, 2),
        seconds_per_step=round(
            statistics.median(config.data.batch_size / r["samples_per_s"] for r in result.history),
            3,
        ),
    )


# The model's named ranges (renderlss/models/occupancy_net.py) and the benchmark's own.
PROFILE_RANGES = (
    "data_loading",
    "backbone",
    "neck",
    "depth_net",
    "splat",
    "encoder3d",
    "heads",
    "render",
    "losses",
)
# Renderer parts by the renderlss.ops.render function that issued an op (innermost wins).
RENDER_PARTS = {
    "ray_box_intersection": "render: ray sampling",
    "_occupancy_bounds": "render: ray sampling",
    "_sample_segment": "render: ray sampling",
    "sample_volume": "render: interpolation",
    "grid_coordinates": "render: interpolation",
    "sample_grid_coordinates": "render: interpolation",
    "volume_weights": "render: weights",
    "_packed_weights_cuda": "render: weights",
    "_composite_logits": "render: compositing",
    "_render_chunk": "render: compositing",
}
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


def _python_function(event) -> str:
    """The function name of a with_stack Python-frame event ("path(line): name"), or ''."""
    return event.name.rsplit(": ", 1)[-1] if "::" not in event.name else ""


def stage_times(events) -> dict[str, float]:
    """Milliseconds per stage of one profiled step (events of a with_stack profile).

    Forward: the CPU wall time of each named range; inside ``render``, each top-level op
    goes to the innermost renderer function of RENDER_PARTS that issued it. Backward: each
    top-level autograd node's time goes to the stage of the forward op with the same
    sequence number.
    """
    times: dict[str, float] = {}
    stage_of_sequence: dict[int, str] = {}

    def add(stage: str, microseconds: float) -> None:
        times[stage] = times.get(stage, 0.0) + microseconds / 1e3

    def claim(event, stage: str) -> None:
        if event.sequence_nr >= 0:
            # The op that made the autograd node is the last one with its number.
            stage_of_sequence[event.sequence_nr] = stage
        for child in event.cpu_children:
            claim(child, stage)

    def split_render(event, part: str) -> float:
        """Attribute the top-level ops under ``event``; returns the microseconds attributed."""
        part = RENDER_PARTS.get(_python_function(event), part)
        if "::" in event.name:
            claim(event, part)
            if part != "render: other":
                add(part, event.cpu_time_total)
                return event.cpu_time_total
            return 0.0
        return sum(split_render(child, part) for child in event.cpu_children)

    for event in events:
        if event.name == "render":
            attributed = sum(split_render(child, "render: other") for child in event.cpu_children)
            add("render: other", event.cpu_time_total - attributed)
        elif event.name in PROFILE_RANGES:
            add(event.name, event.cpu_time_total)
            claim(event, event.name)

    def nested_in_backward(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith(BACKWARD_PREFIX):
                return True
            parent = parent.cpu_parent
        return False

    for event in events:
        if event.name.startswith(BACKWARD_PREFIX) and not nested_in_backward(event):
            stage = stage_of_sequence.get(event.sequence_nr, "other")
            add(f"{stage} (backward)", event.cpu_time_total)
    return times


def case_profile(scale: str, dataroot: str, infos: str, device: str, splat_kernel: str) -> dict:
    """One training step (batch 1) of a scale under torch.profiler, after one unprofiled
    step (allocator, oneDNN and cuDNN settle)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from renderlss.data.collate import to_device
    from renderlss.data.training_set import make_training_loader
    from renderlss.engine.build import build_model
    from renderlss.engine.experiment import load_experiment
    from renderlss.models.objective import loss_terms
    from renderlss.train.distributed import DistInfo

    dev = torch.device(device)
    config = load_experiment(
        SCALE_CONFIGS[scale],
        [*data_overrides(dataroot, infos, 0), f"model.splat_kernel={splat_kernel!r}"],
    )
    model = build_model(config).to(dev).train()
    loader = iter(make_training_loader(config.data, 0, DistInfo(0, 1, 0, dev, False)).loader)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with record_function("data_loading"):
            batch = to_device(next(loader), dev)
        model.zero_grad(set_to_none=True)
        predictions, rendered = model(batch)
        with record_function("losses"):
            terms = loss_terms(
                predictions,
                rendered,
                batch,
                config.model,
                {},
                config.data.classes.ignore_index,
                config.data.grid,
            )
        sum(terms.values()).backward()
        sync()

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities, with_stack=True) as prof:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    stages = {k: round(v, 1) for k, v in sorted(stage_times(prof.events()).items())}
    return dict(
        step_s=round(seconds, 3),
        stages_ms=stages,
        unattributed_ms=round(seconds * 1e3 - sum(stages.values()), 1),
        splat_kernel=splat_kernel,
        peak_mb=round(peak_memory_mb(dev), 1),
    )


CASES = dict(
    profile=case_profile,
    splat=case_splat,
    render=case_render,
    model=case_model,
    synthetic=case_synthetic,
    data=case_data,
    memory=case_memory,
)


# --------------------------------------------------------------------------- sections


def section_splat(args) -> list[dict]:
    rows = []
    for scale in args.scales:
        base = None
        previous_torch = None
        for variant in (
            "cumsum_reference",
            "splat",
            "splat_depth_context",
            "splat_depth_context_compiled",
            "splat_planned",
            "splat_planned_compiled",
        ):
            r = run_isolated(
                "splat", scale=scale, variant=variant, device=args.device, repeats=args.repeats
            )
            r.update(section="splat", scale=scale, case=variant)
            base = base or r
            if "seconds" in r and "seconds" in base:
                r["speedup_vs_cumsum"] = round(base["seconds"] / r["seconds"], 2)
            if not variant.endswith("_compiled"):
                previous_torch = r
            elif "seconds" in r and previous_torch and "seconds" in previous_torch:
                r["speedup_vs_torch"] = round(previous_torch["seconds"] / r["seconds"], 2)
            rows.append(r)
    return rows


def section_render(args) -> list[dict]:
    rows = []
    for scale in args.scales:
        for train in (False, True):
            base = None
            for variant in ("dense_reference", "render_rays", "render_rays_packed"):
                r = run_isolated(
                    "render",
                    scale=scale,
                    variant=variant,
                    device=args.device,
                    repeats=args.repeats,
                    train=train,
                    volume=args.render_volume,
                )
                r.update(
                    section="render", scale=scale, case=f"{variant}{'_train' if train else ''}"
                )
                base = base or r
                if "seconds" in r and "seconds" in base:
                    r["speedup_vs_dense"] = round(base["seconds"] / r["seconds"], 2)
                if variant == "render_rays_packed" and "seconds" in r and "seconds" in rows[-1]:
                    r["speedup_vs_render_rays"] = round(rows[-1]["seconds"] / r["seconds"], 2)
                rows.append(r)
    return rows


def section_model(args) -> list[dict]:
    rows = []
    for scale in args.scales:
        repeats = args.repeats if scale == "demo" else 1
        r = run_isolated("model", scale=scale, device=args.device, repeats=repeats)
        r.update(section="model", scale=scale, case="forward_backward")
        rows.append(r)
    return rows


def section_synthetic(args) -> list[dict]:
    rows = []
    for width, height in ((400, 225), (1600, 900)):
        r = run_isolated("synthetic", width=width, height=height)
        r.update(section="synthetic", scale=f"{width}x{height}", case="keyframe")
        rows.append(r)
    return rows


def synthetic_dataroot(folder: Path, scale: str, keyframes: int) -> tuple[str, str]:
    """Generate a synthetic dataroot with labels on the scale's grid (which its Dataset
    expects) and ``keyframes`` keyframes in each of 2 scenes; returns (dataroot, infos)."""
    from renderlss.data.info_builder import create_infos
    from renderlss.synthetic.config import SyntheticConfig
    from renderlss.synthetic.generate import generate_dataset

    root = folder / f"synthetic_{scale}"
    synthetic = SyntheticConfig(
        num_scenes=2, keyframes_per_scene=keyframes, grid=load_scale(scale).data.grid
    )
    generate_dataset(root, synthetic, progress=False)
    create_infos(
        str(root), "v1.0-synthetic", str(root / "infos"), val_fraction=0.0, show_progress=False
    )
    return str(root), str(root / "infos" / "renderlss_infos_train.pkl")


def section_data(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            # Enough keyframes for one epoch to cover the timed samples: a new epoch restarts
            # the loader's workers, which would be timed too.
            root, infos = synthetic_dataroot(Path(tmp), scale, (args.data_samples + 1) // 2 + 1)
            for workers in (0, 2):
                r = run_isolated(
                    "data",
                    scale=scale,
                    dataroot=root,
                    infos=infos,
                    workers=workers,
                    samples=args.data_samples,
                )
                r.update(section="data", scale=scale, case=f"workers={workers}")
                rows.append(r)
    return rows


def section_memory(args) -> list[dict]:
    r = run_isolated("memory", steps=args.memory_steps, workers=0)
    r.update(section="memory", scale="demo-small", case="train_rss")
    return [r]


def run_profile(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            # +-3 adjacent keyframes at the paper scale: 8 keyframes per scene hold them all.
            root, infos = synthetic_dataroot(Path(tmp), scale, 8)
            r = run_isolated(
                "profile",
                scale=scale,
                dataroot=root,
                infos=infos,
                device=args.device,
                splat_kernel=args.splat_kernel,
            )
            r.update(section="profile", scale=scale, case="train_step")
            rows.append(r)
    return rows


def profile_table(row: dict) -> str:
    """Markdown rows ``| stage | ms | share |`` of one profiled step, largest first."""
    if "stages_ms" not in row:
        return f"{row['scale']}: {row.get('error', 'no result')}"
    total = row["step_s"] * 1e3
    stages = {
        **row["stages_ms"],
        "other (lift geometry, glue)": row["unattributed_ms"],
    }
    lines = [
        f"{row['scale']}: one training step {row['step_s']:.2f} s, "
        f"splat_kernel={row['splat_kernel']}",
        "| stage | time | share |",
        "| --- | ---: | ---: |",
    ]
    for name, ms in sorted(stages.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {ms:,.1f} ms | {100 * ms / total:.1f} % |")
    return "\n".join(lines)


SECTIONS = dict(
    synthetic=section_synthetic,
    data=section_data,
    splat=section_splat,
    render=section_render,
    model=section_model,
    memory=section_memory,
)


def format_row(row: dict) -> str:
    keys = [k for k in row if k not in ("section", "scale", "case")]
    values = ", ".join(
        f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keys
    )
    return f"{row['section']:<10} {row['scale']:<10} {row['case']:<26} {values}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="sections to run (default: all)",
    )
    parser.add_argument(
        "--scales",
        nargs="+",
        choices=list(SCALE_CONFIGS),
        default=list(SCALE_CONFIGS),
        help="model scales (default: both)",
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="device of the op and model cases (default: cuda if available)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case")
    parser.add_argument(
        "--data-samples", type=int, default=20, help="samples read per data-loading case"
    )
    parser.add_argument(
        "--memory-steps", type=int, default=2000, help="training steps of the memory (leak) section"
    )
    parser.add_argument("--out", default="bench/benchmark.json", help="JSON output path")
    parser.add_argument(
        "--render-volume",
        default="",
        help="torch file of the render cases' volume and rays (density, logits, origins, dirs, "
        "z_per_t; default: a random volume and rays)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one training step per scale (where the time goes) instead of the sections",
    )
    parser.add_argument(
        "--splat-kernel",
        choices=("torch", "auto"),
        default="torch",
        help="model.splat_kernel of the profiled step (auto: the compiled kernel of cuda/)",
    )
    args = parser.parse_args(argv)

    from renderlss.io import atomic_save_json

    report = dict(
        date=date.today().isoformat(),
        device=torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        cpu_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=sys.version.split()[0],
        rows=[],
    )
    if args.profile:
        for row in run_profile(args):
            print(profile_table(row), flush=True)
            report["rows"].append(row)
    else:
        for name in args.only:
            for row in SECTIONS[name](args):
                print(format_row(row), flush=True)
                report["rows"].append(row)
    atomic_save_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
