"""Image files of the classification tasks (:mod:`experiments.image_data`): the
:class:`ImageSet` a split is held in, the cache folder, archives checked by sha256 and unpacked
member by member (links and paths leaving the archive refused), and one image decoded to uint8
RGB (16-bit scaled to 8 bits)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DataError", "ImageSet", "cache_dir", "decode_image", "refused_member", "sha256_file", "unpack"]


class DataError(RuntimeError):
    """A dataset cannot be read; the message says what is wrong and how to fix it."""


@dataclasses.dataclass
class ImageSet:
    """One split held in memory: ``images`` uint8 ``[N, 3, H, W]``, ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cache_dir() -> Path:
    """Where decoded tensors and unpacked archives live (``$GAL_CACHE`` or ``~/.cache/gal``)."""
    return Path(os.environ.get("GAL_CACHE", Path.home() / ".cache" / "gal"))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (the cache key of an archive)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def refused_member(m: tarfile.TarInfo) -> str | None:
    """Why the archive member ``m`` may not be unpacked (None: a plain file or folder inside).

    Refused: absolute paths (tarfile's ``data`` filter would silently strip the leading ``/``),
    ``..`` components, devices, fifos and other special files, and links whose target lies
    outside the archive's folder or is absolute."""
    name = m.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in Path(name).parts:
        return "has a '..' path component (would be written outside the cache folder)"
    if m.ischr() or m.isblk() or m.isfifo() or not (m.isfile() or m.isdir() or m.issym()
                                                      or m.islnk()):
        return "is a device, fifo or other special file"
    if m.issym() or m.islnk():
        target = m.linkname
        base = Path(name).parent if m.issym() else Path()
        if target.startswith("/") or not _inside(base / target):
            return f"is a link to {target!r}, outside the archive"
    return None


def _inside(rel: Path) -> bool:
    """A relative path stays inside its root once its ``..`` components are applied."""
    depth = 0
    for part in rel.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return False
    return True


def unpack(archive: Path, expected_sha: str | None) -> tuple[Path, str]:
    """Unpack a .tar.gz once into the cache; returns (folder, sha256). Members with an
    absolute path, ``..``, special files or links pointing outside are refused, with why."""
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist. Fix: set data.archive to the path of "
                        f"the .tar.gz (e.g. ../shared/data/cifar10-jpeg.tar.gz) or data.root to an "
                        f"unpacked ImageFolder tree.")
    sha = sha256_file(archive)
    if expected_sha is not None and not isinstance(expected_sha, str):
        raise DataError(f"data.sha256 = {expected_sha!r} is not a hex string; set it to the "
                        f"archive's sha256 (64 hex digits) or null.")
    if expected_sha and sha != expected_sha.lower():
        raise DataError(f"checksum mismatch for {archive}: sha256 {sha}, expected {expected_sha}. "
                        f"The file is corrupt or a different version; fetch it again, or set "
                        f"data.sha256 to null to accept it as it is.")
    dest = cache_dir() / "unpacked" / sha[:16]
    if not (dest / ".complete").exists():
        # a private temporary folder per process: torchrun ranks or pool workers may unpack at once
        tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for m in members:
                    why = refused_member(m)
                    if why is not None:
                        raise _Refused(f"archive {archive}: member {m.name!r} {why}; refusing to "
                                       f"unpack it. Use an archive of plain files and folders "
                                       f"with relative paths.")
                tf.extractall(tmp, members=members, filter="data")
        except _Refused as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(str(e)) from None
        except tarfile.FilterError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"archive {archive}: a member was refused ({type(e).__name__}: {e}); "
                            f"use an archive of plain files and folders with relative paths.") from None
        except (tarfile.TarError, EOFError, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"archive {archive} is corrupt or truncated ({type(e).__name__}: {e}); "
                            f"fetch it again.") from None
        (tmp / ".complete").touch()
        if (dest / ".complete").exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(dest, ignore_errors=True)  # an incomplete leftover
            try:
                os.replace(tmp, dest)
            except OSError:  # another process renamed its copy into place meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                if not (dest / ".complete").exists():
                    raise
    return dest, sha


class _Refused(Exception):
    """An archive member that is not unpacked (:func:`refused_member`)."""


def _to_8bit(im: Any) -> Any:
    """A 16-bit (``I;16*``) or 32-bit integer (``I``, how Pillow opens 16-bit grayscale PNGs)
    image scaled to 8 bits (value / 257, rounded: 65535 -> 255), not clipped at 255 as
    ``convert("RGB")`` does; other modes unchanged."""
    from PIL import Image

    if not (im.mode.startswith("I;16") or im.mode == "I"):
        return im
    arr = np.asarray(im).astype(np.int64)
    arr = np.clip((arr + 128) // 257, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)  # 2-D uint8: mode "L"


def decode_image(path: str | os.PathLike[str], size: int | None) -> np.ndarray:
    """One image as uint8 ``[H, W, 3]`` (grayscale/RGBA converted to RGB, 16-bit scaled to 8
    bits), resized to ``size`` x ``size`` when given; an undecodable file is a
    :class:`DataError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = _to_8bit(im).convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path} does not decode ({type(e).__name__}: {e}); remove or "
                        f"replace it (and delete the cache {cache_dir()}).") from None
