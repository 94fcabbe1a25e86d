"""mmdet3d's registries on the light install (mmcv-lite: no compiled ``mmcv.ops``).

Each mmdet3d registry imports its part of mmdet3d (``mmdet3d.models``, ``.datasets``,
``.evaluation``, ``.visualization``) the first time a name is looked up, and every one of
those imports ``mmcv.ops``. Without the compiled ops that first lookup raises, so not even a
component registered by a plugin could be built. Here each registry tries its import once;
one that fails is marked as imported, so lookups go on to the names that are registered
(the plugin's, mmengine's through the parent registries) and mmdet3d's own models stay
unavailable, as they are on this install anyway. With the full mmcv nothing is changed.
"""

from __future__ import annotations

import importlib.util

import mmdet3d.registry
from mmengine.logging import print_log
from mmengine.registry import Registry


def has_mmcv_ops() -> bool:
    """Whether mmcv's compiled ops are installed (full mmcv, not mmcv-lite)."""
    return importlib.util.find_spec("mmcv._ext") is not None


def settle_registries_without_ops() -> list[str]:
    """Try each mmdet3d registry's own imports once; mark those that fail without mmcv.ops
    as imported. Returns the names of the registries so marked (none with the full mmcv)."""
    if has_mmcv_ops():
        return []
    settled = []
    for registry in vars(mmdet3d.registry).values():
        if not isinstance(registry, Registry) or registry._imported:
            continue
        try:
            registry.import_from_location()
        except ImportError:
            # mmengine has no public switch for this; _imported is what get() checks.
            registry._imported = True
            settled.append(registry.name)
    if settled:
        print_log(
            f"renderlss.mmdet3d: no mmcv.ops (mmcv-lite); mmdet3d's own modules of the "
            f"registries {settled} are unavailable, the plugin's are registered",
            logger="current",
        )
    return settled
