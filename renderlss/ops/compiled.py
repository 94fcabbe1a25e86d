"""The compiled splat kernels of ``cuda/``: found or built on first use, never at import.

``splat_extension(kernel, device)`` answers the ops ``splat_forward`` / ``splat_backward`` (the
sorted segment sum of ``renderlss.ops.splat``, registered as ``torch.ops.renderlss.*``), or
None when the torch reference is to be used:

- ``kernel="torch"``: always None (the reference).
- ``kernel="auto"``: the library ``renderlss/_splat_ext*.so`` when ``setup.py`` built it
  (``RENDERLSS_BUILD_EXT=1 pip install -e . --no-build-isolation``); otherwise a build by
  ``torch.utils.cpp_extension.load`` into the cache folder (``$RENDERLSS_EXT_CACHE``, else
  ``~/.cache/renderlss/extensions``), once per machine and torch version, when a C++ compiler
  and ninja exist (about 30 s of CPU time; with CUDA torch and nvcc the CUDA kernels are
  compiled too); otherwise None, said once in one log line. A library without the CUDA
  kernels leaves the splat of CUDA tensors to the reference.

Builds of several processes wait for each other through ``build.owner`` (the builder's pid)
in the build folder; the lock of a builder that died is removed, so a killed build never
blocks the next one.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from renderlss.io import _process_alive

logger = logging.getLogger(__name__)

SPLAT_KERNELS = ("auto", "torch")
SOURCE_DIR = Path(__file__).resolve().parents[2] / "cuda"
CPU_SOURCES = ("splat_segment_sum.cpp",)
CUDA_SOURCES = ("splat_segment_sum_cuda.cu",)
# Seconds between looks at another process's build; a build takes about a minute.
_WAIT_POLL = 0.5

# The loaded ops: unset until the first request, None once finding and building failed.
_UNSET = object()
_loaded: object = _UNSET


def splat_extension(kernel: str, device: torch.device) -> SimpleNamespace | None:
    """The compiled splat ops for tensors on ``device``, or None for the torch reference.

    Args:
        kernel: ``"auto"`` (compiled where available) or ``"torch"`` (the reference).
        device: where the splat's tensors live.
    Returns:
        ``splat_forward(depth [P], context [R, C], point_index, voxel_index, context_index
        [M] int64, num_voxels) -> volume [V, C]`` and ``splat_backward(grad_volume, depth,
        context, point_index, voxel_index, context_index, need_depth, need_context) ->
        (grad_depth [P], grad_context [R, C])``, an empty tensor where not needed.
    """
    global _loaded
    if kernel not in SPLAT_KERNELS:
        raise ValueError(f"splat kernel: must be one of {SPLAT_KERNELS}, got {kernel!r}")
    if kernel == "torch" or device.type not in ("cpu", "cuda"):
        return None
    if _loaded is _UNSET:
        _loaded = _find_or_build()
    if _loaded is None or (device.type == "cuda" and not _loaded.has_cuda):
        return None
    return _loaded


def cache_dir() -> Path:
    """Where lazy builds go: ``$RENDERLSS_EXT_CACHE`` or ``~/.cache/renderlss/extensions``."""
    configured = os.environ.get("RENDERLSS_EXT_CACHE")
    if configured:
        return Path(configured)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_home / "renderlss" / "extensions"


def cuda_build_possible() -> bool:
    """Whether this torch and toolkit can build the CUDA kernels (the build then holds the
    CPU kernels as well)."""
    from torch.utils import cpp_extension

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def build_name(with_cuda: bool) -> str:
    """Library name of a lazy build: one per torch version and kernel set, so an upgrade of
    torch builds anew instead of loading a stale binary."""
    version = torch.__version__.replace(".", "_").replace("+", "_")
    return f"renderlss_splat_{'cuda' if with_cuda else 'cpu'}_{version}"


def _ops() -> SimpleNamespace:
    ops = torch.ops.renderlss
    return SimpleNamespace(
        splat_forward=ops.splat_forward,
        splat_backward=ops.splat_backward,
        has_cuda=bool(ops.splat_has_cuda()),
    )


def _find_or_build() -> SimpleNamespace | None:
    if _library_loaded():
        return _ops()
    installed = sorted(Path(__file__).resolve().parent.parent.glob("_splat_ext*.so"))
    if installed:
        torch.ops.load_library(str(installed[0]))
        return _ops()
    missing = _missing_tools()
    if missing:
        logger.warning(
            "renderlss: no compiled splat kernel (%s); the splat uses the torch reference",
            missing,
        )
        return None
    try:
        return build(cuda_build_possible(), cache_dir())
    except Exception as err:  # a failed build must not stop training: the reference works
        lines = str(err).strip().splitlines()
        logger.warning(
            "renderlss: building the splat kernel failed (%s: %s); the splat uses the torch "
            "reference",
            type(err).__name__,
            lines[-1] if lines else "",
        )
        return None


def _library_loaded() -> bool:
    """Whether a library registering ``torch.ops.renderlss`` is loaded in this process (one
    at most: a second registration of the same ops fails)."""
    try:
        return torch.ops.renderlss.splat_has_cuda is not None
    except (AttributeError, RuntimeError):
        return False


def _missing_tools() -> str:
    """Why no lazy build can happen here ('' when it can)."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r} on PATH"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed"
    return ""


def build(with_cuda: bool, root: Path) -> SimpleNamespace:
    """Compile (or load the cached build of) the splat kernels under ``root`` and load them.

    Args:
        with_cuda: also compile the CUDA kernels (needs CUDA torch and nvcc).
        root: the cache folder; the build goes to ``root / build_name(with_cuda)``.
    Returns:
        The ops (see :func:`splat_extension`); raises on a compile error.
    """
    from torch.utils import cpp_extension

    name = build_name(with_cuda)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    sources = [str(SOURCE_DIR / f) for f in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
    flags = ["-O3", "-DRENDERLSS_WITH_CUDA"] if with_cuda else ["-O3"]
    with _BuildLock(folder):
        started = time.perf_counter()
        cpp_extension.load(
            name=name,
            sources=sources,
            extra_cflags=flags,
            extra_cuda_cflags=["-O3", "-DRENDERLSS_WITH_CUDA"] if with_cuda else None,
            build_directory=str(folder),
            is_python_module=False,
            verbose=False,
        )
    logger.info("renderlss: splat kernel %s ready in %.1f s", name, time.perf_counter() - started)
    return _ops()


class _BuildLock:
    """Exclusive right to build in ``folder``, held through ``build.owner`` (our pid).

    torch's own ``lock`` file in the folder carries no pid, so a killed build would leave it
    forever; whoever holds ``build.owner`` removes it, since only an owner builds."""

    def __init__(self, folder: Path) -> None:
        self.owner = folder / "build.owner"
        self.torch_lock = folder / "lock"

    def __enter__(self) -> None:
        while True:
            try:
                fd = os.open(self.owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not _owner_alive(self.owner):
                    self.owner.unlink(missing_ok=True)
                    continue
                time.sleep(_WAIT_POLL)
                continue
            with os.fdopen(fd, "w") as out:
                out.write(str(os.getpid()))
            self.torch_lock.unlink(missing_ok=True)
            return

    def __exit__(self, *exc) -> None:
        self.owner.unlink(missing_ok=True)


def _owner_alive(owner: Path) -> bool:
    """Whether the pid in ``owner`` runs (a file still being written counts as alive)."""
    try:
        text = owner.read_text().strip()
    except FileNotFoundError:
        return False
    if not text:
        # Written right after creation; older than a few seconds means its writer died.
        try:
            return time.time() - owner.stat().st_mtime < 5.0
        except FileNotFoundError:
            return False
    return _process_alive(int(text))
