"""A procedural driving world written as a nuScenes-format dataroot, with Occ3D labels and
an exact depth/semantics oracle (``tools/make_synthetic.py``, ``docs/synthetic.md``)."""

from renderlss.synthetic.config import SyntheticConfig, synthetic_config
from renderlss.synthetic.generate import generate_dataset, time_keyframe

__all__ = ["SyntheticConfig", "generate_dataset", "synthetic_config", "time_keyframe"]
