"""Atomic file writes: every artifact goes to a temporary file in the target directory and is
renamed over the target only when complete, so an interrupted tool never leaves a truncated
file that a later run would mistake for a finished one.

The temporary file of ``dir/name`` is ``dir/.name.<pid>@<host>.<random>.tmp``: a writer killed
with SIGKILL cannot remove it, but its name says which process wrote it, so
:func:`remove_stale_temp_files` can later delete exactly the files of writers that are gone
(and leaves alone those of live writers and of other hosts sharing the folder)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import secrets
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

# .<target name>.<pid>@<host>.<8 hex digits>.tmp
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)@(?P<host>[^/]+)\.[0-9a-f]{8}\.tmp$")


def _host_tag() -> str:
    """This machine's name as it may appear in a file name (no separators of ours)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def temp_path_for(path: Path) -> Path:
    """A fresh temporary-file name next to ``path`` that records this process and host."""
    token = secrets.token_hex(4)
    return path.parent / f".{path.name}.{os.getpid()}@{_host_tag()}.{token}.tmp"


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that killed writers of :func:`atomic_open` left in
    ``folder`` and, when ``recursive``, its subfolders (a tool writing only into ``folder``
    itself passes False, so that an output folder inside a dataroot is not walked whole).

    A file is stale when its name records this host and a process id that no longer runs;
    files of live processes (a writer busy right now) and of other hosts are kept. A reused
    process id only keeps a stale file longer, it never deletes a live one.

    Returns:
        the deleted files (none when ``folder`` does not exist).
    """
    folder = Path(folder)
    host = _host_tag()
    removed = []
    for root, folders, names in os.walk(folder):
        if not recursive:
            folders.clear()
        for name in names:
            match = _TEMP_NAME.match(name)
            if match is None or match["host"] != host or _process_alive(int(match["pid"])):
                continue
            path = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    The parent directory is created if needed. On an exception the temporary file is removed
    and ``path`` is left untouched. The file gets the mode a plain ``open`` would give it
    (``0o666`` less the umask), not the private ``0o600`` of ``tempfile.mkstemp``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save_pickle(path: str | Path, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` atomically (highest protocol)."""
    with atomic_open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)


def atomic_save_npz(path: str | Path, compressed: bool = True, **arrays: np.ndarray) -> None:
    """Save named arrays to an ``.npz`` file atomically (the name is used as given)."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as handle:
        save(handle, **arrays)


def atomic_save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    # Imported here so that data tools writing pickles and npz files do not pay for torch.
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def load_image_pair(
    path: str | Path, what: str, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """The two same-shaped [H, W] arrays ``names`` of a per-image ``.npz`` artifact.

    Raises:
        FileNotFoundError: no such file (``what`` names the kind of file).
        ValueError: unreadable, a field missing, or shapes that are not equal [H, W] —
            naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with np.load(path) as data:
            fields = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err!r})") from err
    for name in names:
        if name not in fields:
            raise ValueError(f"{path}: field {name!r} missing (has {sorted(fields)})")
    first, second = fields[names[0]], fields[names[1]]
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(
            f"{path}: fields {names[0]!r} {first.shape} and {names[1]!r} {second.shape} must "
            "be equal [H, W] shapes"
        )
    return first, second
