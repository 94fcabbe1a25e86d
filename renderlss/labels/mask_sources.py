"""Class-agnostic masks of a camera image, as a segment image.

Every mask source returns one ``[H, W]`` int32 *segment image*: pixels of one mask share a
segment id (>= 0, not necessarily contiguous), :data:`NO_SEGMENT` (-1) marks pixels that no
mask covers. A label image rather than a stack of boolean masks because the voting that turns
masks into classes needs every pixel in at most one mask, and because it stays one small array
at 1600x900 whatever the number of masks. Overlapping masks (SAM's automatic generator emits
nested parts and wholes) are flattened by painting the largest mask first and smaller ones on
top, so a pixel belongs to the most specific mask covering it.

Three sources:

- :class:`SuperpixelMaskSource` (``slic``): SLIC superpixels merged into regions by
  Felzenszwalb's criterion on the region adjacency graph; CPU only, no extra packages.
- :class:`FileMaskSource` (``files:DIR``): masks computed elsewhere (any SAM variant), read
  from ``DIR/<CAM>/<image stem>.npz`` (key ``segments``) or ``.json`` (SAM's automatic mask
  generator output with COCO RLE segmentations).
- :class:`SamMaskSource` (``sam:CKPT``): Segment Anything's automatic mask generator, run
  here; needs the optional ``segment_anything`` package, torchvision and a checkpoint file.

A source is called as ``source(camera, image_path, (height, width))`` and returns the segment
image; the expected size comes from the info file so that a mismatch is caught.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from renderlss.records.files import read_rgb_image

NO_SEGMENT = -1


class MaskSource(Protocol):
    """Produces the segment image of one camera image."""

    def settings(self) -> dict[str, Any]:
        """What determines the masks (recorded in the label manifest)."""
        ...

    def __call__(self, camera: str, image_path: Path, size: tuple[int, int]) -> np.ndarray: ...


def check_image_size(image: np.ndarray, size: tuple[int, int], where: str) -> None:
    """Raise naming ``where`` when the [H, W, ...] ``image`` is not ``size`` = (H, W)."""
    if tuple(image.shape[:2]) != tuple(size):
        raise ValueError(
            f"{where}: size {image.shape[1]}x{image.shape[0]} (WxH) does not match the image "
            f"size {size[1]}x{size[0]} of the info file"
        )


def masks_to_segments(masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Flatten possibly overlapping boolean masks into a segment image.

    Args:
        masks: K boolean [H, W] masks; size: (H, W).
    Returns:
        [H, W] int32: index k of the smallest mask covering each pixel, -1 where none does
        (painting largest first lets nested parts override the wholes that contain them).
    """
    segments = np.full(size, NO_SEGMENT, dtype=np.int32)
    areas = [int(mask.sum()) for mask in masks]
    for k in sorted(range(len(masks)), key=lambda i: -areas[i]):
        segments[masks[k]] = k
    return segments


# ---------------------------------------------------------------------------------------------
# Masks from files


def decode_coco_rle(rle: dict, where: str) -> np.ndarray:
    """[H, W] bool mask of a COCO run-length encoding ``{"size": [H, W], "counts": ...}``.

    ``counts`` is either a list of run lengths or the compressed string that pycocotools and
    SAM write (LEB128-like, 6 bits per character, runs after the third stored as differences
    to the run two before). Runs alternate 0s and 1s, starting with 0s, in column-major order.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: RLE needs 'size': [H, W] and 'counts' ({err!r})") from err
    runs = _decode_rle_string(counts, where) if isinstance(counts, str) else list(counts)
    runs_array = np.asarray(runs, dtype=np.int64)
    if np.any(runs_array < 0) or runs_array.sum() != height * width:
        raise ValueError(
            f"{where}: RLE runs cover {int(runs_array.sum())} pixels, the size {height}x{width} "
            f"has {height * width} (corrupt counts)"
        )
    values = np.arange(len(runs_array)) % 2 == 1
    flat = np.repeat(values, runs_array)
    return flat.reshape(width, height).T


def _decode_rle_string(text: str, where: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``)."""
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError(f"{where}: truncated compressed RLE string")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"{where}: character {text[position]!r} is not compressed RLE")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift  # sign-extend: a negative difference
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def read_segments_npz(path: Path, size: tuple[int, int]) -> np.ndarray:
    """[H, W] int32 segment image from an ``.npz`` file with key ``segments``."""
    try:
        with np.load(path) as data:
            fields = {name: data[name] for name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err!r})") from err
    if "segments" not in fields:
        raise ValueError(f"{path}: no 'segments' array (has {sorted(fields)})")
    segments = fields["segments"]
    if segments.ndim != 2 or not np.issubdtype(segments.dtype, np.integer):
        raise ValueError(
            f"{path}: 'segments' must be a 2-D integer array, got {segments.dtype} {segments.shape}"
        )
    check_image_size(segments, size, f"{path}: 'segments'")
    if segments.size and segments.min() < NO_SEGMENT:
        raise ValueError(f"{path}: 'segments' has ids below {NO_SEGMENT}")
    return segments.astype(np.int32)


def read_sam_json(path: Path, size: tuple[int, int]) -> np.ndarray:
    """[H, W] int32 segment image from SAM automatic-mask-generator JSON output: a list of
    records whose ``segmentation`` is a COCO RLE (``amg.py --convert-to-rle``)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of mask records, got {type(records).__name__}")
    masks = []
    for k, record in enumerate(records):
        where = f"{path}: mask {k}"
        if not isinstance(record, dict) or not isinstance(record.get("segmentation"), dict):
            raise ValueError(f"{where}: no COCO RLE 'segmentation' (write with RLE output)")
        mask = decode_coco_rle(record["segmentation"], where)
        check_image_size(mask, size, where)
        masks.append(mask)
    return masks_to_segments(masks, size)


@dataclass
class FileMaskSource:
    """Masks precomputed elsewhere: ``<mask_dir>/<CAM>/<image stem>.npz`` (``segments``
    int32 [H, W], -1 = no mask) or, when that does not exist, ``.json`` (SAM records with COCO
    RLE segmentations)."""

    mask_dir: Path

    def settings(self) -> dict[str, Any]:
        return dict(kind="files", mask_dir=str(Path(self.mask_dir).resolve()))

    def __call__(self, camera: str, image_path: Path, size: tuple[int, int]) -> np.ndarray:
        base = Path(self.mask_dir) / camera / Path(image_path).stem
        npz_path, json_path = base.with_suffix(".npz"), base.with_suffix(".json")
        if npz_path.is_file():
            return read_segments_npz(npz_path, size)
        if json_path.is_file():
            return read_sam_json(json_path, size)
        raise FileNotFoundError(f"no mask file {npz_path} or {json_path}")


# ---------------------------------------------------------------------------------------------
# CPU over-segmentation


def segment_means(features: np.ndarray, segments: np.ndarray, count: int) -> np.ndarray:
    """[count, C] mean feature per segment (NaN for empty ones) of [..., C] ``features`` over
    the [...] ``segments`` with ids 0..count-1."""
    flat_ids = segments.ravel()
    sizes = np.bincount(flat_ids, minlength=count).astype(np.float64)
    sums = np.stack(
        [
            np.bincount(flat_ids, weights=channel.ravel(), minlength=count)
            for channel in np.moveaxis(features, -1, 0)
        ],
        axis=1,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / sizes[:, None]


def slic_superpixels(
    lab: np.ndarray, num_superpixels: int, compactness: float, iterations: int
) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012): k-means in (L, a, b, x, y) with every pixel
    compared only to the centres seeded in the 3x3 grid cells around its own cell.

    Args:
        lab: [H, W, 3] float32 CIELAB image (L in 0..100).
        num_superpixels: seeds on a regular grid (about this many).
        compactness: weight of spatial against colour distance (Lab units per grid step).
    Returns:
        [H, W] int32 superpixel ids in 0..rows*cols-1 (a superpixel may be disconnected).
    """
    height, width = lab.shape[:2]
    step = np.sqrt(height * width / num_superpixels)
    rows, cols = max(1, int(round(height / step))), max(1, int(round(width / step)))
    cell_h, cell_w = -(-height // rows), -(-width // cols)
    # Recount so that the padding is smaller than a cell: every cell holds real pixels.
    rows, cols = -(-height // cell_h), -(-width // cell_w)
    ys, xs = np.mgrid[0 : rows * cell_h, 0 : cols * cell_w].astype(np.float32)
    spatial = np.float32(compactness / step)
    padded = np.pad(lab, ((0, rows * cell_h - height), (0, cols * cell_w - width), (0, 0)))
    features = np.concatenate([padded, (ys * spatial)[..., None], (xs * spatial)[..., None]], -1)
    # Pixels grouped by grid cell, so that each cell meets its 9 candidates by broadcasting.
    blocks = features.reshape(rows, cell_h, cols, cell_w, 5).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(rows * cols, cell_h * cell_w, 5)  # [R*C, P, 5]
    inside = (ys < height) & (xs < width)  # padding takes no part in the means
    inside = inside.reshape(rows, cell_h, cols, cell_w).transpose(0, 2, 1, 3).ravel()
    cell_row, cell_col = np.divmod(np.arange(rows * cols), cols)
    offsets = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    cand_row = cell_row[:, None] + offsets[:, 0]  # [R*C, 9]
    cand_col = cell_col[:, None] + offsets[:, 1]
    valid = (cand_row >= 0) & (cand_row < rows) & (cand_col >= 0) & (cand_col < cols)
    candidates = np.clip(cand_row, 0, rows - 1) * cols + np.clip(cand_col, 0, cols - 1)
    segments = np.repeat(np.arange(rows * cols), cell_h * cell_w)  # start: the grid cells
    inside_features = blocks.reshape(-1, 5)[inside]
    # No cell is all padding, so no initial centre is empty (NaN); later empty clusters keep
    # their previous centre.
    centres = segment_means(inside_features, segments[inside], rows * cols).astype(np.float32)
    for _ in range(iterations):
        chosen = centres[candidates]  # [R*C, 9, 5]
        norms = np.where(valid, np.square(chosen).sum(-1), np.inf)  # [R*C, 9]
        dots = chosen @ blocks.transpose(0, 2, 1)  # [R*C, 9, P]
        # |f - c|^2 less the per-pixel |f|^2, which does not change the nearest centre.
        best = norms[:, :1] - 2 * dots[:, 0]  # [R*C, P]
        nearest = np.zeros(best.shape, dtype=np.int8)
        for k in range(1, len(offsets)):
            score = norms[:, k : k + 1] - 2 * dots[:, k]
            closer = score < best
            best = np.where(closer, score, best)
            nearest[closer] = k
        segments = np.take_along_axis(candidates, nearest, axis=1).ravel()
        updated = segment_means(inside_features, segments[inside], rows * cols)
        centres = np.where(np.isnan(updated), centres, updated).astype(np.float32)
    grid = segments.reshape(rows, cols, cell_h, cell_w).transpose(0, 2, 1, 3)
    return grid.reshape(rows * cell_h, cols * cell_w)[:height, :width].astype(np.int32)


def split_disconnected(segments: np.ndarray) -> np.ndarray:
    """[H, W] int32 ids of the 4-connected components of equal ids in ``segments`` [H, W]."""
    height, width = segments.shape
    index = np.arange(height * width).reshape(height, width)
    same_right = segments[:, 1:] == segments[:, :-1]
    same_down = segments[1:, :] == segments[:-1, :]
    sources = np.concatenate([index[:, :-1][same_right], index[:-1, :][same_down]])
    targets = np.concatenate([index[:, 1:][same_right], index[1:, :][same_down]])
    graph = coo_matrix(
        (np.ones(len(sources), dtype=np.int8), (sources, targets)),
        shape=(height * width, height * width),
    )
    _, components = connected_components(graph, directed=False)
    return components.reshape(height, width).astype(np.int32)


def adjacent_pairs(segments: np.ndarray) -> np.ndarray:
    """[E, 2] unique (a, b), a < b, of ids that touch horizontally or vertically."""
    pairs = np.concatenate(
        [
            np.stack([segments[:, 1:].ravel(), segments[:, :-1].ravel()], 1),
            np.stack([segments[1:, :].ravel(), segments[:-1, :].ravel()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, axis=1), axis=0)


def merge_regions(
    regions: np.ndarray, lab: np.ndarray, scale: float, unit_area: float
) -> np.ndarray:
    """Merge adjacent regions by Felzenszwalb & Huttenlocher's criterion on the region
    adjacency graph: edges (mean-colour distances) in increasing order join two components
    when the edge is no larger than either's largest internal edge plus ``scale / size``.

    Args:
        regions: [H, W] int32 ids 0..R-1; lab: [H, W, 3] CIELAB image.
        scale: the criterion's k, in Lab units for a region of ``unit_area`` pixels (small
            regions merge easily, large ones only across weak edges).
    Returns:
        [H, W] int32 merged region ids 0..M-1.
    """
    count = int(regions.max()) + 1
    means = segment_means(lab, regions, count)
    size = np.bincount(regions.ravel(), minlength=count) / unit_area
    pairs = adjacent_pairs(regions)
    weights = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1)
    parent = np.arange(count)
    internal = np.zeros(count)

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for edge in np.argsort(weights, kind="stable"):
        a, b = root(pairs[edge, 0]), root(pairs[edge, 1])
        weight = weights[edge]
        if a == b or weight > min(internal[a] + scale / size[a], internal[b] + scale / size[b]):
            continue
        parent[b] = a
        size[a] += size[b]
        internal[a] = weight  # edges come in increasing order: the largest in the union
    roots = np.array([root(node) for node in range(count)])
    _, merged = np.unique(roots, return_inverse=True)
    return merged[regions].astype(np.int32)


def oversegment(
    image_rgb: np.ndarray,
    num_superpixels: int,
    compactness: float,
    iterations: int,
    merge_scale: float,
    blur_sigma: float,
) -> np.ndarray:
    """Segment image of a classical over-segmentation: SLIC superpixels, split into connected
    pieces, merged by :func:`merge_regions` with the area of one grid superpixel as unit.

    Args:
        image_rgb: [H, W, 3] uint8; blur_sigma: Gaussian pre-smoothing in pixels (0: none),
            which keeps JPEG noise and fine texture from fragmenting the superpixels.
    Returns:
        [H, W] int32 segment ids, every pixel covered.
    """
    image = image_rgb.astype(np.float32) / 255.0
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    superpixels = slic_superpixels(lab, num_superpixels, compactness, iterations)
    pieces = split_disconnected(superpixels)
    unit_area = lab.shape[0] * lab.shape[1] / num_superpixels
    return merge_regions(pieces, lab, merge_scale, unit_area)


@dataclass
class SuperpixelMaskSource:
    """CPU fallback masks by :func:`oversegment` (parameters documented there); the defaults
    are tuned on the synthetic world (docs/sam_labels.md)."""

    num_superpixels: int = 1200
    compactness: float = 10.0
    iterations: int = 10
    merge_scale: float = 8.0
    blur_sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.num_superpixels < 1 or self.iterations < 0:
            raise ValueError("slic masks: num_superpixels >= 1 and iterations >= 0 required")
        if self.compactness <= 0 or self.merge_scale < 0 or self.blur_sigma < 0:
            raise ValueError("slic masks: compactness > 0, merge_scale >= 0, blur_sigma >= 0")

    def settings(self) -> dict[str, Any]:
        return dict(
            kind="slic",
            num_superpixels=self.num_superpixels,
            compactness=self.compactness,
            iterations=self.iterations,
            merge_scale=self.merge_scale,
            blur_sigma=self.blur_sigma,
        )

    def __call__(self, camera: str, image_path: Path, size: tuple[int, int]) -> np.ndarray:
        image = read_rgb_image(image_path, f"camera {camera}")
        check_image_size(image, size, str(image_path))
        return oversegment(
            image,
            self.num_superpixels,
            self.compactness,
            self.iterations,
            self.merge_scale,
            self.blur_sigma,
        )


# ---------------------------------------------------------------------------------------------
# Segment Anything (optional)

SAM_MODULE_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
# Width of the ViT image encoder (rows of its patch-embedding weight) -> SAM model type.
SAM_ENCODER_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
SAM_PATCH_WEIGHT = "image_encoder.patch_embed.proj.weight"


def read_sam_checkpoint(path: Path) -> tuple[str, dict]:
    """The model type (``vit_b``/``vit_l``/``vit_h``) and state dict of a SAM checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a loadable PyTorch file, or not a Segment Anything state dict.
    """
    import torch  # the label tools do not need torch otherwise

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign files
        raise ValueError(f"{path}: not a loadable PyTorch checkpoint ({err})") from err
    keys = list(state) if isinstance(state, dict) else []
    missing = [p for p in SAM_MODULE_PREFIXES if not any(str(k).startswith(p) for k in keys)]
    if missing or SAM_PATCH_WEIGHT not in state:
        raise ValueError(
            f"{path}: not a Segment Anything checkpoint (no {', '.join(missing) or 'patch_embed'}"
            f"* weights; expected sam_vit_b/l/h_*.pth from the segment-anything release)"
        )
    width = int(state[SAM_PATCH_WEIGHT].shape[0])
    if width not in SAM_ENCODER_WIDTHS:
        raise ValueError(
            f"{path}: SAM image encoder of width {width}; known {sorted(SAM_ENCODER_WIDTHS)}"
        )
    return SAM_ENCODER_WIDTHS[width], state


def import_segment_anything() -> Any:
    """The ``segment_anything`` module, or an ImportError saying what to install."""
    alternatives = "or run SAM elsewhere and use --masks files:DIR, or the CPU --masks slic"
    try:
        import torchvision  # noqa: F401  (segment_anything imports it; name it first)
    except ImportError as err:
        raise ImportError(
            f"SAM masks need torchvision (install the build matching your torch), {alternatives}"
        ) from err
    try:
        import segment_anything
    except ImportError as err:
        raise ImportError(
            "SAM masks need the segment_anything package (pip install "
            f"git+https://github.com/facebookresearch/segment-anything.git), {alternatives}"
        ) from err
    return segment_anything


class SamMaskSource:
    """Masks from Segment Anything's automatic mask generator.

    Args:
        checkpoint: a released SAM checkpoint (the model type is read from its weights).
        device: torch device for the model (e.g. ``"cuda"``, ``"cpu"``).
        points_per_side, pred_iou_thresh, stability_score_thresh, min_mask_region_area:
            passed to ``SamAutomaticMaskGenerator``.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_mask_region_area: int = 0,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.model_type, state = read_sam_checkpoint(self.checkpoint)
        sam = import_segment_anything()
        model = sam.sam_model_registry[self.model_type]()
        model.load_state_dict(state)
        model.to(device).eval()
        self.generator_options = dict(
            points_per_side=points_per_side,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            min_mask_region_area=min_mask_region_area,
        )
        self.generator = sam.SamAutomaticMaskGenerator(model, **self.generator_options)

    def settings(self) -> dict[str, Any]:
        return dict(
            kind="sam",
            checkpoint=str(self.checkpoint.resolve()),
            model_type=self.model_type,
            **self.generator_options,
        )

    def __call__(self, camera: str, image_path: Path, size: tuple[int, int]) -> np.ndarray:
        image = read_rgb_image(image_path, f"camera {camera}")
        check_image_size(image, size, str(image_path))
        records = self.generator.generate(image)
        return masks_to_segments([r["segmentation"] for r in records], size)


def make_mask_source(spec: str, device: str = "cpu") -> MaskSource:
    """A mask source from its command-line spelling: ``slic``, ``files:DIR`` or ``sam:CKPT``."""
    kind, _, argument = spec.partition(":")
    if kind == "slic" and not argument:
        return SuperpixelMaskSource()
    if kind == "files" and argument:
        if not Path(argument).is_dir():
            raise FileNotFoundError(f"--masks files:{argument}: no such folder")
        return FileMaskSource(Path(argument))
    if kind == "sam" and argument:
        return SamMaskSource(argument, device=device)
    raise ValueError(f"--masks {spec!r}: expected slic, files:DIR or sam:CKPT")
