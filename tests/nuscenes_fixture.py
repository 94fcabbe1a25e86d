"""A tiny but complete nuScenes-format dataroot written from hand-chosen numbers.

Independent of renderlss on purpose: poses come from pyquaternion and plain numpy here, so
tests can compare what renderlss reads against values computed by hand.

The world (all times in microseconds, global frame z up):

* Scene ``scene_names[0]`` (3 keyframes, 0.5 s apart, starting at ``T0``): the car drives
  along global +y at 10 m/s, heading 90 deg, from (100, 200, 0). Scene ``scene_names[1]``
  (2 keyframes, starting at ``T0 + 100 s``): heading 0 deg at 5 m/s from (500, -300, 1).
* LIDAR_TOP records two sweeps 100 ms and 50 ms before each keyframe, then the keyframe.
* Camera ``c`` fires ``CAMERA_DELAY_US[c]`` after its keyframe's LiDAR, so its ego pose is
  further along the road (CAM_FRONT: 20 ms -> 0.2 m in the first scene).
* Boxes (first scene): a car at global (100, 210, 1), (102.5, 210, 1), (105, 210, 1) in the
  three keyframes, heading 120 deg, size [w, l, h] = [2, 4.5, 1.6]; a pedestrian in the
  second keyframe only at (98, 207, 0.9), heading 90 deg.
* Images: 32 x 24 black JPEGs with a white 4 x 4 block at rows 6..9, columns 20..23.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pyquaternion import Quaternion

T0 = 1_600_000_000_000_000
KEYFRAME_STEP_US = 500_000
SWEEP_OFFSETS_US = (-100_000, -50_000)
IMAGE_WIDTH, IMAGE_HEIGHT = 32, 24
INTRINSIC = [[16.0, 0.0, 16.0], [0.0, 16.0, 12.0], [0.0, 0.0, 1.0]]
# The same matrix as info files store it: principal point + 0.5 px, from the devkit's pixel
# centres at integers to renderlss's at +0.5 (docs/formats.md).
INTRINSIC_PIXEL_CORNERS = [[16.0, 0.0, 16.5], [0.0, 16.0, 12.5], [0.0, 0.0, 1.0]]
BLOCK_ROWS, BLOCK_COLS = (6, 10), (20, 24)  # white block, half-open pixel ranges

# channel -> (yaw of the optical axis about ego z in degrees, translation in ego, delay us)
CAMERAS = {
    "CAM_FRONT": (0.0, (1.5, 0.0, 1.5), 20_000),
    "CAM_FRONT_RIGHT": (-55.0, (1.4, -0.5, 1.5), 30_000),
    "CAM_BACK_RIGHT": (-110.0, (0.0, -0.9, 1.5), 40_000),
    "CAM_BACK": (180.0, (-1.0, 0.0, 1.5), 50_000),
    "CAM_BACK_LEFT": (110.0, (0.0, 0.9, 1.5), 60_000),
    "CAM_FRONT_LEFT": (55.0, (1.4, 0.5, 1.5), 10_000),
}
LIDAR_TRANSLATION = (0.9, 0.0, 1.8)
LIDAR_YAW_DEG = -90.0  # LIDAR_TOP x axis points to the car's right

# (start position, heading deg, speed m/s, number of keyframes, start time)
SCENE_MOTION = (
    ((100.0, 200.0, 0.0), 90.0, 10.0, 3, T0),
    ((500.0, -300.0, 1.0), 0.0, 5.0, 2, T0 + 100_000_000),
)

# lidarseg categories (real nuScenes names: the devkit colours them by name) and their index.
CATEGORIES = {
    "noise": 0,
    "human.pedestrian.adult": 2,
    "vehicle.car": 17,
    "flat.driveable_surface": 24,
}
# (instance name, category, size [w, l, h], heading deg, {keyframe: global centre})
BOXES = (
    (
        "car",
        "vehicle.car",
        (2.0, 4.5, 1.6),
        120.0,
        {0: (100.0, 210.0, 1.0), 1: (102.5, 210.0, 1.0), 2: (105.0, 210.0, 1.0)},
    ),
    ("pedestrian", "human.pedestrian.adult", (0.6, 0.7, 1.8), 90.0, {1: (98.0, 207.0, 0.9)}),
)
LIDAR_POINTS = np.array(
    [
        [1.0, 2.0, -1.5, 10.0, 0.0],
        [-3.0, 5.0, -1.7, 20.0, 1.0],
        [0.5, -8.0, 0.2, 30.0, 2.0],
        [4.0, 4.0, -1.8, 40.0, 3.0],
        [-6.0, -1.0, 0.5, 50.0, 4.0],
    ],
    dtype=np.float32,
)
LIDARSEG_LABELS = np.array([24, 24, 17, 2, 0], dtype=np.uint8)


def token(*parts: object) -> str:
    """Deterministic 32-hex token of a descriptive name."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def yaw_quaternion(yaw_deg: float) -> list[float]:
    return list(Quaternion(axis=[0.0, 0.0, 1.0], degrees=yaw_deg).elements)


def camera_quaternion(yaw_deg: float) -> list[float]:
    """Camera -> ego rotation: optical axis (camera z) along ego heading ``yaw_deg``, camera
    x to its right, camera y down."""
    forward = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    yaw = np.radians(yaw_deg)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return list(Quaternion(matrix=rz @ forward).elements)


def ego_position(scene_index: int, timestamp: int) -> list[float]:
    start, heading, speed, _, t_start = SCENE_MOTION[scene_index]
    travelled = speed * (timestamp - t_start) / 1e6
    h = np.radians(heading)
    return [start[0] + travelled * np.cos(h), start[1] + travelled * np.sin(h), start[2]]


def keyframe_time(scene_index: int, k: int) -> int:
    return SCENE_MOTION[scene_index][4] + k * KEYFRAME_STEP_US


def _write_json(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps(records, indent=1))


def _link(records: list[dict]) -> None:
    """Set prev/next tokens along a time-ordered list of records."""
    for i, rec in enumerate(records):
        rec["prev"] = records[i - 1]["token"] if i > 0 else ""
        rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


def _write_image(path: Path) -> None:
    pixels = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)
    pixels[BLOCK_ROWS[0] : BLOCK_ROWS[1], BLOCK_COLS[0] : BLOCK_COLS[1]] = 255
    Image.fromarray(pixels).save(path, quality=95)


def _sample_data(
    root: Path, ego_poses: list, s: int, k: int, key: str, channel: str, t: int, filename: str
) -> dict:
    """A sample_data record (keyframe unless the key names a sweep), its own ego pose at time
    ``t`` (appended to ``ego_poses``) and its file."""
    ego_poses.append(
        dict(
            token=token("ego_pose", key),
            timestamp=t,
            rotation=yaw_quaternion(SCENE_MOTION[s][1]),
            translation=ego_position(s, t),
        )
    )
    camera = channel.startswith("CAM")
    path = root / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if camera:
        _write_image(path)
    else:
        LIDAR_POINTS.tofile(path)
    return dict(
        token=token("sample_data", key),
        sample_token=token("sample", s, k),
        ego_pose_token=token("ego_pose", key),
        calibrated_sensor_token=token("calibrated_sensor", channel),
        timestamp=t,
        fileformat=filename.rsplit(".", 1)[-1],
        is_key_frame=filename.startswith("samples/"),
        height=IMAGE_HEIGHT if camera else 0,
        width=IMAGE_WIDTH if camera else 0,
        filename=filename,
    )


def occ_labels(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Occ3D-style labels: free (17) everywhere, driveable surface (11) in the lowest layer,
    a car (4) block at x indices [2, 5), y [3, 7), z [1, 3); lidar mask on the lower half,
    camera mask on the first half of x."""
    semantics = np.full(shape, 17, dtype=np.uint8)
    semantics[:, :, 0] = 11
    semantics[2:5, 3:7, 1:3] = 4
    mask_lidar = np.zeros(shape, dtype=np.uint8)
    mask_lidar[:, :, : shape[2] // 2] = 1
    mask_camera = np.zeros(shape, dtype=np.uint8)
    mask_camera[: shape[0] // 2] = 1
    return dict(semantics=semantics, mask_lidar=mask_lidar, mask_camera=mask_camera)


def make_nuscenes_dataroot(
    root: Path,
    version: str = "v1.0-fixture",
    scene_names: tuple[str, str] = ("scene-0001", "scene-0002"),
    with_lidarseg: bool = True,
    occ_samples: tuple[tuple[int, int], ...] = ((0, 0), (0, 1)),
    occ_shape: tuple[int, int, int] = (20, 20, 6),
) -> Path:
    """Write the dataroot; ``occ_samples`` lists (scene index, keyframe) with Occ3D labels."""
    root = Path(root)
    tables = root / version
    tables.mkdir(parents=True)
    (root / "maps").mkdir()
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(root / "maps" / "fixture.png")

    sensors, calibrated = [], []
    for channel, (yaw, translation, _) in CAMERAS.items():
        sensors.append(dict(token=token("sensor", channel), channel=channel, modality="camera"))
        calibrated.append(
            dict(
                token=token("calibrated_sensor", channel),
                sensor_token=token("sensor", channel),
                translation=list(translation),
                rotation=camera_quaternion(yaw),
                camera_intrinsic=INTRINSIC,
            )
        )
    sensors.append(dict(token=token("sensor", "LIDAR_TOP"), channel="LIDAR_TOP", modality="lidar"))
    calibrated.append(
        dict(
            token=token("calibrated_sensor", "LIDAR_TOP"),
            sensor_token=token("sensor", "LIDAR_TOP"),
            translation=list(LIDAR_TRANSLATION),
            rotation=yaw_quaternion(LIDAR_YAW_DEG),
            camera_intrinsic=[],
        )
    )

    logs, scenes, samples, sample_data, ego_poses, lidarseg = [], [], [], [], [], []
    annotations, instances = [], []
    for s, name in enumerate(scene_names):
        n_keyframes = SCENE_MOTION[s][3]
        logs.append(
            dict(
                token=token("log", s),
                logfile=f"log-{s}",
                vehicle="fixture-car",
                date_captured="2020-01-01",
                location="fixture-town",
            )
        )
        scene_samples = [
            dict(
                token=token("sample", s, k),
                timestamp=keyframe_time(s, k),
                scene_token=token("scene", s),
            )
            for k in range(n_keyframes)
        ]
        _link(scene_samples)
        samples += scene_samples
        scenes.append(
            dict(
                token=token("scene", s),
                log_token=token("log", s),
                nbr_samples=n_keyframes,
                first_sample_token=scene_samples[0]["token"],
                last_sample_token=scene_samples[-1]["token"],
                name=name,
                description=f"fixture scene {s}",
            )
        )

        lidar_chain = []
        for k in range(n_keyframes):
            t_key = keyframe_time(s, k)
            for i, offset in enumerate(SWEEP_OFFSETS_US):
                key = f"lidar-sweep-{s}-{k}-{i}"
                lidar_chain.append(
                    _sample_data(
                        root,
                        ego_poses,
                        s,
                        k,
                        key,
                        "LIDAR_TOP",
                        t_key + offset,
                        f"sweeps/LIDAR_TOP/{key}.pcd.bin",
                    )
                )
            key = f"lidar-{s}-{k}"
            lidar_chain.append(
                _sample_data(
                    root,
                    ego_poses,
                    s,
                    k,
                    key,
                    "LIDAR_TOP",
                    t_key,
                    f"samples/LIDAR_TOP/{key}.pcd.bin",
                )
            )
            if with_lidarseg:
                filename = f"lidarseg/{version}/{token('sample_data', key)}_lidarseg.bin"
                (root / filename).parent.mkdir(parents=True, exist_ok=True)
                LIDARSEG_LABELS.tofile(root / filename)
                lidarseg.append(
                    dict(
                        token=token("lidarseg", key),
                        sample_data_token=token("sample_data", key),
                        filename=filename,
                    )
                )
        _link(lidar_chain)
        sample_data += lidar_chain

        for channel, (_, _, delay) in CAMERAS.items():
            chain = []
            for k in range(n_keyframes):
                key = f"{channel}-{s}-{k}"
                chain.append(
                    _sample_data(
                        root,
                        ego_poses,
                        s,
                        k,
                        key,
                        channel,
                        keyframe_time(s, k) + delay,
                        f"samples/{channel}/{key}.jpg",
                    )
                )
            _link(chain)
            sample_data += chain

        for instance, category, size, box_heading, centres in BOXES if s == 0 else ():
            anns = [
                dict(
                    token=token("sample_annotation", instance, k),
                    sample_token=token("sample", s, k),
                    instance_token=token("instance", instance),
                    visibility_token="4",
                    attribute_tokens=[],
                    translation=list(centre),
                    size=list(size),
                    rotation=yaw_quaternion(box_heading),
                    num_lidar_pts=7 + k,
                    num_radar_pts=0,
                )
                for k, centre in sorted(centres.items())
            ]
            _link(anns)
            annotations += anns
            instances.append(
                dict(
                    token=token("instance", instance),
                    category_token=token("category", category),
                    nbr_annotations=len(anns),
                    first_annotation_token=anns[0]["token"],
                    last_annotation_token=anns[-1]["token"],
                )
            )

    for s, k in occ_samples:
        folder = root / "gts" / scene_names[s] / token("sample", s, k)
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "labels.npz", **occ_labels(occ_shape))

    _write_json(
        tables / "category.json",
        [
            dict(token=token("category", name), name=name, description=name, index=index)
            for name, index in CATEGORIES.items()
        ],
    )
    _write_json(tables / "attribute.json", [])
    _write_json(
        tables / "visibility.json",
        [dict(token=str(v), level=f"v{v}", description=f"level {v}") for v in range(1, 5)],
    )
    _write_json(
        tables / "map.json",
        [
            dict(
                token=token("map"),
                log_tokens=[log["token"] for log in logs],
                category="semantic_prior",
                filename="maps/fixture.png",
            )
        ],
    )
    for name, records in (
        ("instance", instances),
        ("sensor", sensors),
        ("calibrated_sensor", calibrated),
        ("ego_pose", ego_poses),
        ("log", logs),
        ("scene", scenes),
        ("sample", samples),
        ("sample_data", sample_data),
        ("sample_annotation", annotations),
    ):
        _write_json(tables / f"{name}.json", records)
    if with_lidarseg:
        _write_json(tables / "lidarseg.json", lidarseg)
    return root


def edit_record(root: Path, version: str, table: str, record_token: str, **fields: object) -> None:
    """Overwrite fields of one record of a table (to build broken dataroots)."""
    path = Path(root) / version / f"{table}.json"
    records = json.loads(path.read_text())
    (record,) = [r for r in records if r["token"] == record_token]
    record.update(fields)
    path.write_text(json.dumps(records))
