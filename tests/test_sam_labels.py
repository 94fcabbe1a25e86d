"""SAM-style 2D labels: voting by hand and by brute force, mask files, the CPU
over-segmentation, SAM error paths, and the builder on the synthetic world against its oracle."""

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from renderlss.data.classes import learning_map_table, load_classes
from renderlss.data.config import TargetConfig
from renderlss.data.info_builder import create_infos
from renderlss.eval.label_quality import accumulate_confusion, quality_metrics
from renderlss.labels.mask_sources import (
    FileMaskSource,
    SamMaskSource,
    SuperpixelMaskSource,
    decode_coco_rle,
    make_mask_source,
    masks_to_segments,
    oversegment,
    read_sam_checkpoint,
)
from renderlss.labels.mask_voting import vote_labels
from renderlss.labels.semantic_labels import Labeller, LabelSettings, build_semantic_labels
from renderlss.records.files import output_path
from renderlss.records.infos import load_infos
from renderlss.targets.pixel_targets import PixelTargets
from renderlss.targets.semantic_label_files import (
    SemanticLabels,
    SemanticLabelSource,
    load_semantic_labels,
    save_semantic_labels,
    semantic_label_targets,
)
from renderlss.targets.sources import LidarTargetSource

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import make_sam_labels  # noqa: E402

CLASSES = load_classes(REPO / "configs" / "_base_" / "occ3d_nuscenes.py")
IGNORE = 255


def targets_at(pixels: list[tuple[int, int]], classes: list[int], weights=None) -> PixelTargets:
    """Targets at the centres of (row, col) pixels."""
    rows, cols = np.array(pixels, dtype=np.float64).reshape(-1, 2).T
    return PixelTargets(
        uv=np.stack([cols + 0.5, rows + 0.5], 1),
        depth=np.ones(len(classes), dtype=np.float32),
        semantics=np.array(classes, dtype=np.uint8),
        confidence=np.ones(len(classes), np.float32) if weights is None else np.float32(weights),
    )


# -- voting -------------------------------------------------------------------------------------

# 2 x 4 image: segment 5 on the left half, segment 9 on the right, no mask in the last column
SEGMENTS = np.array([[5, 5, 9, -1], [5, 5, 9, -1]], dtype=np.int32)


def test_purity_threshold_decides_a_segment():
    # segment 5: three car (4) votes and one road (11) vote -> purity 3/4
    t = targets_at([(0, 0), (0, 1), (1, 0), (1, 1)], [4, 4, 4, 11])
    labels, conf = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=1, min_purity=0.7)
    assert labels[:, :2].tolist() == [[4, 4], [4, 4]]
    np.testing.assert_allclose(conf[:, :2], 0.75)
    assert np.all(labels[:, 2:] == IGNORE) and np.all(conf[:, 2:] == 0)
    labels, conf = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=1, min_purity=0.8)
    assert np.all(labels == IGNORE) and np.all(conf == 0)


def test_min_votes_counts_only_labelled_voters():
    # segment 9: two pedestrian (7) votes and two unlabelled points
    t = targets_at([(0, 2), (1, 2), (0, 2), (1, 2)], [7, 7, IGNORE, IGNORE])
    labels, conf = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=3, min_purity=0.5)
    assert np.all(labels == IGNORE)
    labels, conf = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=2, min_purity=0.5)
    assert labels[:, 2].tolist() == [7, 7] and np.all(conf[:, 2] == 1.0)
    assert np.all(labels[:, :2] == IGNORE)


def test_tie_is_ignored_even_at_low_purity():
    t = targets_at([(0, 0), (0, 1), (1, 0), (1, 1)], [1, 2, 2, 1])
    labels, _ = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=1, min_purity=0.0)
    assert np.all(labels == IGNORE)
    # confidence weights break the tie: 1 + 1 against 0.5 + 0.5 -> purity 2/3
    t = targets_at([(0, 0), (0, 1), (1, 0), (1, 1)], [1, 2, 2, 1], [1, 0.5, 0.5, 1])
    labels, conf = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=1, min_purity=0.6)
    assert np.all(labels[:, :2] == 1)
    np.testing.assert_allclose(conf[:, :2], 2 / 3)


def test_votes_in_unmasked_pixels_label_nothing():
    t = targets_at([(0, 3), (1, 3), (0, 3)], [4, 4, 4])
    labels, _ = vote_labels(SEGMENTS, t, 17, IGNORE, min_votes=1, min_purity=0.5)
    assert np.all(labels == IGNORE)


def test_voting_rejects_bad_targets():
    with pytest.raises(ValueError, match="outside the 4x2 image"):
        vote_labels(SEGMENTS, targets_at([(2, 0)], [4]), 17, IGNORE, 1, 0.5, "img")
    with pytest.raises(ValueError, match=r"img: target classes \[17\]"):
        vote_labels(SEGMENTS, targets_at([(0, 0)], [17]), 17, IGNORE, 1, 0.5, "img")


def test_voting_matches_brute_force_loops():
    rng = np.random.default_rng(3)
    for _ in range(20):
        segments = rng.integers(-1, 6, size=(5, 7)).astype(np.int32)
        count = int(rng.integers(0, 60))
        pixels = list(zip(rng.integers(0, 5, count), rng.integers(0, 7, count), strict=True))
        classes = rng.choice([0, 1, 2, IGNORE], size=count).tolist()
        t = targets_at(pixels, classes)
        min_votes, min_purity = int(rng.integers(0, 5)), float(rng.uniform(0.3, 1.0))
        labels, conf = vote_labels(segments, t, 3, IGNORE, min_votes, min_purity)
        for seg in np.unique(segments):
            counts = {c: 0 for c in range(3)}
            for (i, j), c in zip(pixels, classes, strict=True):
                if segments[i, j] == seg and c != IGNORE:
                    counts[c] += 1
            total = sum(counts.values())
            ordered = sorted(counts.values())
            purity = ordered[-1] / total if total else 0.0
            labelled = (
                seg != -1
                and total >= min_votes
                and purity >= min_purity
                and ordered[-1] > ordered[-2]
            )
            expected = max(counts, key=counts.get) if labelled else IGNORE
            assert np.all(labels[segments == seg] == expected)
            np.testing.assert_allclose(conf[segments == seg], purity if labelled else 0.0)


# -- masks from files ---------------------------------------------------------------------------

# Reference encodings written by pycocotools.mask.encode for the masks below.
RLE_4X5 = {"size": [4, 5], "counts": "5220003"}  # ones at rows 1-2, columns 1-3
RLE_6X7 = {"size": [6, 7], "counts": "4171M0000000OO"}  # negative run differences


def test_coco_rle_decoding_matches_pycocotools_strings():
    expected = np.zeros((4, 5), bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(decode_coco_rle(RLE_4X5, "m"), expected)
    expected = np.zeros((6, 7), bool)
    expected[0:2, 2:7] = True
    expected[4, 0] = expected[5, 6] = True
    np.testing.assert_array_equal(decode_coco_rle(RLE_6X7, "m"), expected)
    # uncompressed counts: column-major runs 0s, 1s, 0s, ...
    runs = {"size": [2, 3], "counts": [1, 2, 3]}
    np.testing.assert_array_equal(
        decode_coco_rle(runs, "m"), [[False, True, False], [True, False, False]]
    )
    with pytest.raises(ValueError, match="m: RLE runs cover 6 pixels.*20"):
        decode_coco_rle({"size": [4, 5], "counts": [1, 2, 3]}, "m")


def write_image_mask(root: Path, cam: str, stem: str, suffix: str, payload) -> Path:
    path = root / cam / f"{stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        np.savez(path, **payload)
    else:
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_file_masks_npz_and_sam_json(tmp_path):
    segments = np.array([[0, 0, 7], [-1, 3, 3]], dtype=np.int64)
    write_image_mask(tmp_path, "CAM_A", "img1", ".npz", {"segments": segments})
    source = FileMaskSource(tmp_path)
    got = source("CAM_A", Path("samples/CAM_A/img1.jpg"), (2, 3))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, segments)
    # SAM JSON: a whole (the 6x7 mask's top rows) and a part nested in it; the part wins
    part = {"size": [6, 7], "counts": [12, 2, 28]}  # rows 0-1 of column 2
    records = [{"segmentation": RLE_6X7, "area": 12}, {"segmentation": part, "area": 2}]
    write_image_mask(tmp_path, "CAM_B", "img2", ".json", records)
    got = source("CAM_B", Path("img2.jpg"), (6, 7))
    expected = np.full((6, 7), -1)
    expected[0:2, 2:7] = 0
    expected[4, 0] = expected[5, 6] = 0
    expected[0:2, 2] = 1
    np.testing.assert_array_equal(got, expected)


def test_file_masks_errors_name_the_file(tmp_path):
    source = FileMaskSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="CAM_A/none.npz"):
        source("CAM_A", Path("none.jpg"), (2, 3))
    path = write_image_mask(tmp_path, "CAM_A", "small", ".npz", {"segments": np.zeros((2, 2), int)})
    with pytest.raises(ValueError, match=f"{path}.*2x2.*3x2"):
        source("CAM_A", Path("small.jpg"), (2, 3))
    write_image_mask(tmp_path, "CAM_A", "float", ".npz", {"segments": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="integer"):
        source("CAM_A", Path("float.jpg"), (2, 3))
    path = write_image_mask(tmp_path, "CAM_A", "nokey", ".npz", {"other": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=f"{path}: no 'segments'"):
        source("CAM_A", Path("nokey.jpg"), (2, 3))
    path = tmp_path / "CAM_A" / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=f"{path}: not a readable"):
        source("CAM_A", Path("broken.jpg"), (2, 3))
    path = write_image_mask(tmp_path, "CAM_A", "bad", ".json", "{not json")
    with pytest.raises(ValueError, match=f"{path}: not a readable JSON"):
        source("CAM_A", Path("bad.jpg"), (2, 3))
    path = write_image_mask(tmp_path, "CAM_A", "png", ".json", [{"segmentation": [[1, 2]]}])
    with pytest.raises(ValueError, match=f"{path}: mask 0: no COCO RLE"):
        source("CAM_A", Path("png.jpg"), (2, 3))
    write_image_mask(tmp_path, "CAM_A", "size", ".json", [{"segmentation": RLE_4X5}])
    with pytest.raises(ValueError, match="mask 0: size 5x4"):
        source("CAM_A", Path("size.jpg"), (6, 7))


def test_masks_to_segments_paints_small_masks_over_large():
    big = np.ones((3, 3), bool)
    small = np.zeros((3, 3), bool)
    small[0, 0] = True
    segments = masks_to_segments([small, big], (3, 3))
    assert segments[0, 0] == 0 and np.all(segments.ravel()[1:] == 1)


# -- CPU over-segmentation ----------------------------------------------------------------------


def test_oversegmentation_respects_a_sharp_colour_edge():
    rng = np.random.default_rng(0)
    height, width, edge = 60, 90, 37  # the edge is off the superpixel grid
    image = np.empty((height, width, 3))
    image[:, :edge] = (170, 60, 50)
    image[:, edge:] = (60, 80, 160)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    segments = oversegment(image, 60, 10.0, 10, 8.0, 1.0)
    assert segments.shape == (height, width) and segments.min() >= 0
    left, right = set(np.unique(segments[:, :edge])), set(np.unique(segments[:, edge:]))
    assert not left & right
    # noise alone does not split a flat region much: merging joins its superpixels
    assert len(left) + len(right) <= 6


def test_superpixel_source_reads_and_checks_the_image(synthetic_root):
    image = next((synthetic_root / "samples" / "CAM_FRONT").glob("*.jpg"))
    segments = SuperpixelMaskSource()("CAM_FRONT", image, (90, 160))
    assert segments.shape == (90, 160) and segments.min() >= 0
    with pytest.raises(ValueError, match="does not match the image size 100x90"):
        SuperpixelMaskSource()("CAM_FRONT", image, (90, 100))
    with pytest.raises(FileNotFoundError, match="none.jpg: image file missing"):
        SuperpixelMaskSource()("CAM_FRONT", synthetic_root / "none.jpg", (90, 160))


# -- Segment Anything: error paths only (the package cannot be installed here) ------------------


def test_sam_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        read_sam_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable PyTorch checkpoint"):
        SamMaskSource(garbage)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, other)
    with pytest.raises(ValueError, match="not a Segment Anything checkpoint"):
        SamMaskSource(other)


def fake_sam_checkpoint(path: Path, width: int) -> Path:
    torch.save(
        {
            "image_encoder.patch_embed.proj.weight": torch.zeros(width, 3, 1, 1),
            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.zeros(2, 2),
            "mask_decoder.iou_token.weight": torch.zeros(1, 2),
        },
        path,
    )
    return path


def test_sam_model_type_from_encoder_width_and_missing_packages(tmp_path, monkeypatch):
    assert read_sam_checkpoint(fake_sam_checkpoint(tmp_path / "b.pth", 768))[0] == "vit_b"
    assert read_sam_checkpoint(fake_sam_checkpoint(tmp_path / "h.pth", 1280))[0] == "vit_h"
    with pytest.raises(ValueError, match="width 100"):
        read_sam_checkpoint(fake_sam_checkpoint(tmp_path / "x.pth", 100))
    # A module set to None in sys.modules fails to import, as an absent package does.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match="need torchvision.*files:DIR"):
        make_mask_source(f"sam:{tmp_path / 'b.pth'}")
    monkeypatch.setitem(sys.modules, "torchvision", type(sys)("torchvision"))
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    with pytest.raises(ImportError, match="need the segment_anything package"):
        make_mask_source(f"sam:{tmp_path / 'b.pth'}")


def test_mask_source_specs(tmp_path):
    assert isinstance(make_mask_source("slic"), SuperpixelMaskSource)
    assert make_mask_source(f"files:{tmp_path}").mask_dir == tmp_path
    with pytest.raises(FileNotFoundError, match="no such folder"):
        make_mask_source(f"files:{tmp_path / 'none'}")
    with pytest.raises(ValueError, match="expected slic, files:DIR or sam:CKPT"):
        make_mask_source("sam")


# -- label files --------------------------------------------------------------------------------


def test_label_file_round_trip_and_dense_targets(tmp_path):
    labels = np.full((3, 4), IGNORE, np.uint8)
    labels[0, 1], labels[2, 3], labels[2, 2] = 4, 11, 7
    confidence = np.where(labels != IGNORE, 0.8, 0.0).astype(np.float32)
    path = tmp_path / "CAM" / "a.npz"
    save_semantic_labels(path, SemanticLabels(labels, confidence))
    loaded = load_semantic_labels(path)
    np.testing.assert_array_equal(loaded.labels, labels)
    t = semantic_label_targets(loaded, IGNORE)
    np.testing.assert_allclose(t.uv, [[1.5, 0.5], [2.5, 2.5], [3.5, 2.5]])
    assert t.semantics.tolist() == [4, 7, 11] and np.all(t.depth == 0)
    np.testing.assert_allclose(t.confidence, 0.8)
    # stride 2 keeps rows 0, 2 and columns 0, 2: only (2, 2)
    assert semantic_label_targets(loaded, IGNORE, stride=2).semantics.tolist() == [7]


def test_label_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_semantic_labels(tmp_path / "none.npz")
    np.savez(tmp_path / "a.npz", labels=np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="field 'confidence' missing"):
        load_semantic_labels(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", labels=np.zeros((2, 2), np.uint8), confidence=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="equal"):
        load_semantic_labels(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", labels=np.zeros((2, 2), np.int32), confidence=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="uint8"):
        load_semantic_labels(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        load_semantic_labels(tmp_path / "d.npz")


def test_quality_metrics_on_a_hand_confusion():
    confusion = np.zeros((3, 3), np.int64)  # classes 0, 1; row 2 sky, column 2 unlabelled
    truth = np.array([0, 0, 0, 1, 1, IGNORE, IGNORE, 1], np.uint8)
    pred = np.array([0, 0, IGNORE, 1, 0, 1, IGNORE, IGNORE], np.uint8)
    accumulate_confusion(confusion, pred, truth, IGNORE)
    m = quality_metrics(confusion)
    assert m["coverage"] == pytest.approx(5 / 8)
    assert m["class_coverage"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # class 0: 2 hits, 2 labelled true, 3 predicted -> 2 / 3; class 1: 1 hit, 2 true
    # labelled, 2 predicted (one on sky) -> 1 / 3
    np.testing.assert_allclose(m["iou"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(m["class_accuracy"], [1.0, 0.5])
    assert m["miou"] == pytest.approx(0.5)


# -- the builder on the synthetic world ---------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_infos(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sam_infos")
    create_infos(str(synthetic_root), "v1.0-synthetic", str(out), show_progress=False)
    return out / "renderlss_infos_train.pkl"


@pytest.fixture(scope="module")
def slic_labels(synthetic_infos, synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sam_labels") / "labels"
    argv = ["--infos", str(synthetic_infos), "--out", str(out), "--masks", "slic"]
    assert make_sam_labels.main([*argv, "--no-progress"]) == 0
    return out


def lidar_source(dataroot) -> LidarTargetSource:
    targets = TargetConfig()
    return LidarTargetSource(
        dataroot, learning_map_table(CLASSES), IGNORE, targets.ego_box, targets.min_depth
    )


def test_labels_agree_with_the_oracle_and_cover_more_than_lidar(
    slic_labels, synthetic_infos, synthetic_root
):
    _, infos = load_infos(synthetic_infos)
    labelled = agree = lidar_pixels = total = images = 0
    for info in infos:
        lidar = lidar_source(synthetic_root)(info, list(info["cams"]))
        for cam, cam_info in info["cams"].items():
            labels = load_semantic_labels(output_path(slic_labels, cam, cam_info["data_path"]))
            with np.load(output_path(synthetic_root / "oracle", cam, cam_info["data_path"])) as d:
                truth = d["semantics"]
            mask = labels.labels != IGNORE
            labelled += mask.sum()
            agree += (labels.labels[mask] == truth[mask]).sum()
            lidar_pixels += len(lidar[cam])
            total += truth.size
            images += 1
    assert images == len(infos) * 6
    assert agree / labelled > 0.9
    assert labelled > 4 * lidar_pixels and labelled / total > 0.5
    manifest = json.loads((slic_labels / "manifest.json").read_text())
    assert manifest["config"]["masks"]["kind"] == "slic"
    assert manifest["config"]["min_purity"] == LabelSettings().min_purity


def test_label_source_feeds_class_targets(slic_labels, synthetic_infos):
    _, infos = load_infos(synthetic_infos)
    cams = list(infos[0]["cams"])
    targets = SemanticLabelSource(slic_labels, IGNORE)(infos[0], cams)
    labels = load_semantic_labels(
        output_path(slic_labels, cams[0], infos[0]["cams"][cams[0]]["data_path"])
    )
    assert len(targets[cams[0]]) == np.count_nonzero(labels.labels != IGNORE)
    assert np.all(targets[cams[0]].depth == 0)


def build(infos, root, out, mask_source=None, settings=None, shard=(0, 1)):
    labeller = Labeller(
        mask_source or SuperpixelMaskSource(num_superpixels=150),
        lidar_source(root),
        {},
        CLASSES.occ_class_names,
        IGNORE,
        settings or LabelSettings(),
    )
    return build_semantic_labels(
        infos, root, out, ["CAM_FRONT", "CAM_BACK"], labeller, shard=shard, show_progress=False
    )


def test_builder_resumes_shards_and_refuses_other_settings(
    synthetic_infos, synthetic_root, tmp_path
):
    _, infos = load_infos(synthetic_infos)
    first = build(infos, synthetic_root, tmp_path, shard=(1, 2))
    assert first.keyframes == len(infos[1::2]) and first.done == 2 * first.keyframes
    second = build(infos, synthetic_root, tmp_path)
    assert second.skipped == first.done and second.done == 2 * len(infos) - first.done
    assert not first.failed and not second.failed
    with pytest.raises(ValueError, match="other parameters.*min_votes"):
        build(infos, synthetic_root, tmp_path, settings=LabelSettings(min_votes=10))


def test_builder_counts_missing_lidarseg_and_bad_masks(synthetic_infos, synthetic_root, tmp_path):
    _, infos = load_infos(synthetic_infos)
    infos = pickle.loads(pickle.dumps(infos[:3]))
    infos[0]["lidarseg_path"] = ""  # a sample without lidarseg: nothing to vote with
    infos[1]["lidarseg_path"] = "lidarseg/v1.0-synthetic/missing_lidarseg.bin"
    mask_dir = tmp_path / "masks"
    for info in infos:
        for cam in ("CAM_FRONT", "CAM_BACK"):
            stem = Path(info["cams"][cam]["data_path"]).stem
            write_image_mask(mask_dir, cam, stem, ".npz", {"segments": np.zeros((90, 160), int)})
    bad = Path(infos[2]["cams"]["CAM_BACK"]["data_path"]).stem
    write_image_mask(mask_dir, "CAM_BACK", bad, ".npz", {"segments": np.zeros((45, 80), int)})
    summary = build(
        infos,
        synthetic_root,
        tmp_path / "out",
        FileMaskSource(mask_dir),
        LabelSettings(min_votes=1, min_purity=0.0),
    )
    assert summary.done == 1 and len(summary.failed) == 5
    reasons = "\n".join(summary.failed)
    assert f"sample {infos[0]['token']} CAM_FRONT: " in reasons
    assert "no labelled points to vote with" in reasons
    assert "missing_lidarseg.bin" in reasons
    assert f"sample {infos[2]['token']} CAM_BACK: " in reasons and f"{bad}.npz" in reasons
    # one segment over the whole image: the majority class of the front camera's points
    labels = load_semantic_labels(
        output_path(tmp_path / "out", "CAM_FRONT", infos[2]["cams"]["CAM_FRONT"]["data_path"])
    )
    assert len(np.unique(labels.labels)) == 1 and labels.labels[0, 0] != IGNORE
