"""Install renderlss.

torch is deliberately a lower bound only: the install must never replace a torch the user
already has (a CUDA build on a workstation, the CPU build on a laptop). ``make`` installs
``torch==2.13.0`` first when torch is missing.

Compiled kernels are optional: set ``RENDERLSS_BUILD_CUDA=1`` to build the sources in
``cuda/`` (if any). Nothing is compiled at import time.
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
}


def kernel_sources() -> list[str]:
    return sorted(
        os.path.join("cuda", f) for f in os.listdir("cuda") if f.endswith((".cpp", ".cu"))
    )


def ext_modules() -> list:
    if os.environ.get("RENDERLSS_BUILD_CUDA") != "1" or not kernel_sources():
        return []
    from torch.utils.cpp_extension import CUDAExtension

    return [CUDAExtension("renderlss._cuda", sources=kernel_sources())]


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
