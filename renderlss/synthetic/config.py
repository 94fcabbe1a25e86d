"""Options of the synthetic nuScenes-format world (``tools/make_synthetic.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from renderlss.configuration import from_dict
from renderlss.data.classes import ClassesConfig, load_classes
from renderlss.geometry.grid import VoxelGrid

# The class taxonomy is data; the generator reads it from the base config of the repository.
DEFAULT_CLASSES_FILE = Path(__file__).resolve().parents[2] / "configs/_base_/occ3d_nuscenes.py"


def default_classes() -> ClassesConfig:
    """The Occ3D / nuScenes lidarseg taxonomy of the repository's base config."""
    return load_classes(DEFAULT_CLASSES_FILE)


@dataclass
class SyntheticConfig:
    """Everything that decides the generated dataset; equal configs give identical files."""

    version: str = "v1.0-synthetic"
    seed: int = 0
    num_scenes: int = 4
    keyframes_per_scene: int = 10
    # Image size; the rig is defined at 1600x900 and its intrinsics scaled to this size.
    width: int = 400
    height: int = 225
    jpeg_quality: int = 90
    # Sensor rates (Hz). Keyframes are LiDAR sweeps; both other rates must be whole
    # multiples of the keyframe rate so every keyframe has a LiDAR sweep and camera frame.
    keyframe_rate_hz: float = 2.0
    lidar_rate_hz: float = 20.0
    camera_rate_hz: float = 12.0
    # Write every 12 Hz camera frame (True) or only the keyframe images (False, faster).
    camera_sweeps: bool = False
    # LiDAR rays per beam and revolution (32 beams).
    azimuth_steps: int = 1024
    lidar_max_range: float = 80.0
    # Camera rays beyond this distance see "sky" (image fades into haze, oracle depth 0).
    camera_max_range: float = 150.0
    # Occ3D labels: sub-samples per voxel axis for the class vote; camera-mask pixel stride.
    occ_subsamples: int = 2
    camera_mask_stride: int = 1
    # Objects whose centre is within this distance of the ego vehicle get an annotation.
    annotation_range: float = 60.0
    grid: VoxelGrid = field(default_factory=VoxelGrid)
    classes: ClassesConfig = field(default_factory=default_classes)

    def validate(self, where: str = "SyntheticConfig") -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        positive_ints = {
            "num_scenes": self.num_scenes,
            "keyframes_per_scene": self.keyframes_per_scene,
            "width": self.width,
            "height": self.height,
            "azimuth_steps": self.azimuth_steps,
            "occ_subsamples": self.occ_subsamples,
            "camera_mask_stride": self.camera_mask_stride,
        }
        for name, value in positive_ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}.{name}: expected a positive integer, got {value!r}")
        if self.width < 16 or self.height < 16:
            raise ValueError(
                f"{where}.width/height: at least 16 pixels, got {self.width}x{self.height}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"{where}.jpeg_quality: expected 1..100, got {self.jpeg_quality}")
        if not self.version or "/" in self.version:
            raise ValueError(f"{where}.version: expected a folder name, got {self.version!r}")
        for name in ("lidar_max_range", "camera_max_range", "annotation_range", "keyframe_rate_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{where}.{name}: expected a positive number, got {getattr(self, name)}"
                )
        for name in ("lidar_rate_hz", "camera_rate_hz"):
            ratio = getattr(self, name) / self.keyframe_rate_hz
            if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(
                    f"{where}.{name}: {getattr(self, name)} Hz must be a whole multiple of "
                    f"keyframe_rate_hz = {self.keyframe_rate_hz} Hz"
                )
        self.grid.validate(f"{where}.grid")
        missing = {"vehicle.ego", "flat.driveable_surface"} - set(
            self.classes.lidarseg_category_names
        )
        if missing or not self.classes.occ_class_names:
            raise ValueError(
                f"{where}.classes: not the nuScenes lidarseg taxonomy (lacks {missing})"
            )

    @property
    def sweeps_per_keyframe(self) -> int:
        """LiDAR sweeps per keyframe interval (the keyframe included)."""
        return round(self.lidar_rate_hz / self.keyframe_rate_hz)

    @property
    def camera_frames_per_keyframe(self) -> int:
        """Camera frames per keyframe interval (the keyframe image included)."""
        return round(self.camera_rate_hz / self.keyframe_rate_hz)


def synthetic_config(**values) -> SyntheticConfig:
    """A validated :class:`SyntheticConfig` from keyword values (nested sections as dicts)."""
    return from_dict(SyntheticConfig, values, "synthetic")
