"""Install renderlss.

torch is deliberately a lower bound only: the install must never replace a torch the user
already has (a CUDA build on a workstation, the CPU build on a laptop). ``make`` installs
``torch==2.13.0`` first when torch is missing.

Compiled kernels are optional: ``RENDERLSS_BUILD_EXT=1 pip install -e . --no-build-isolation``
builds the splat kernels of ``cuda/`` into ``renderlss/_splat_ext*.so`` (with the CUDA kernels
when torch has CUDA and nvcc is found; ``RENDERLSS_BUILD_CUDA=1`` is the same). Without it,
``renderlss.ops.compiled`` builds them on first use where a compiler exists. Nothing is
compiled at import time.
"""

import os

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch>=2.1",
    "numpy>=1.24,<2",
    "nerfacc==0.5.3",
    "nuscenes-devkit==1.2.0",
    "pyquaternion>=0.9.9",
    "opencv-python-headless>=4.8",
    "pillow>=9",
    "scipy>=1.10",
    "tqdm>=4.60",
    "tensorboard>=2.14",
]

EXTRAS = {
    "dev": ["pytest>=7", "ruff>=0.5"],
    "sam": ["segment-anything"],
    # The plugin renderlss.mmdet3d (docs/mmdet3d.md): the light OpenMMLab stack, whose
    # mmcv-lite has registries and transforms but no compiled ops. nuscenes-devkit is pinned
    # here too: without it the resolver falls back to a devkit that builds matplotlib<3.6.
    "mmdet3d": [
        "mmdet3d==1.4.0",
        "mmdet==3.3.0",
        "mmcv-lite==2.1.0",
        "mmengine>=0.10,<1",
        "nuscenes-devkit==1.2.0",
    ],
}


def kernel_sources(with_cuda: bool) -> list[str]:
    suffixes = (".cpp", ".cu") if with_cuda else (".cpp",)
    return sorted(os.path.join("cuda", f) for f in os.listdir("cuda") if f.endswith(suffixes))


def ext_modules() -> list:
    """The splat kernels as one op library (TORCH_LIBRARY, no Python module), on request."""
    if "1" not in (os.environ.get("RENDERLSS_BUILD_EXT"), os.environ.get("RENDERLSS_BUILD_CUDA")):
        return []
    import torch
    from torch.utils import cpp_extension

    if torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None:
        flags = ["-O3", "-DRENDERLSS_WITH_CUDA"]
        return [
            cpp_extension.CUDAExtension(
                "renderlss._splat_ext",
                sources=kernel_sources(True),
                extra_compile_args={"cxx": flags, "nvcc": flags},
            )
        ]
    return [
        cpp_extension.CppExtension(
            "renderlss._splat_ext", sources=kernel_sources(False), extra_compile_args=["-O3"]
        )
    ]


def cmdclass() -> dict:
    if not ext_modules():
        return {}
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension}


setup(
    name="renderlss",
    version="0.1.0",
    description="Render-supervised LSS training for camera-only 3D semantic occupancy",
    python_requires=">=3.10",
    packages=find_packages(include=["renderlss", "renderlss.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    ext_modules=ext_modules(),
    cmdclass=cmdclass(),
)
