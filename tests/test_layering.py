"""The floors of docs/design.md: every module imports only packages on lower floors (or its
own), and nuscenes-devkit only where a nuScenes dataroot is read."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "renderlss"
FLOORS = {
    "mmdet3d": 7,
    "engine": 6,
    "eval": 5,
    "synthetic": 5,
    "data": 4,
    "labels": 4,
    "targets": 3,
    "models": 3,
    "records": 2,
    "ops": 2,
    "vis": 2,
    "train": 2,
    "geometry": 1,
    "configuration": 1,
    "io": 1,
    "class_balance": 1,
}
DEVKIT_READERS = {
    "data/info_builder.py",
    "data/nuscenes_access.py",
    "data/splits.py",
    "data/unlabeled_infos.py",
}


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement of ``path`` (anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def package_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if package_of(p) in FLOORS]


def test_every_package_has_a_floor():
    top = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert top - {"__init__", "__pycache__"} <= set(FLOORS)


def test_no_module_imports_a_package_above_or_beside_it():
    wrong = []
    for path in modules():
        mine = package_of(path)
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] != "renderlss" or len(parts) < 2:
                continue
            theirs = parts[1]
            if theirs != mine and FLOORS[theirs] >= FLOORS[mine]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_nuscenes_devkit_only_where_a_dataroot_is_read():
    users = {
        str(path.relative_to(PACKAGE))
        for path in modules()
        if any(name.split(".")[0] == "nuscenes" for name in imported_modules(path))
    }
    assert users == DEVKIT_READERS
