"""Image data as float tensors [N, C, H, W] in [0, 1] (or iterables of such batches).

Real data read from disk:

* :func:`load_idx_images` — MNIST / Fashion-MNIST IDX files (gzip or not), found through an explicit
  path, ``$PDS_DATA``, ``data/raw/`` and Debian's ``/usr/share/datasets/fashion-mnist``
  (package ``dataset-fashion-mnist``; ``make data`` installs it where it can).
* :func:`load_image_folder` / :func:`iter_image_folder` — PNG/JPEG files under a folder (recursive),
  centre-cropped to a square and resized: LSUN exports, FFHQ, CelebA-HQ, CIFAR-10 as PNGs, ...

Stand-ins available offline (they are *not* the paper's data sets, and notebooks say so):

* :func:`natural_image_crops` — random square crops of the colour photographs bundled with
  scikit-image, a stand-in for scene data (LSUN-like 1/f² statistics).
* :func:`aligned_faces` — the 25×25 LFW face subset bundled with scikit-image, a stand-in for an
  aligned face data set (FFHQ-like shared layout) at small size.

:func:`dataset_batches` turns a data specification (a name above or a path) into a seeded choice of
``n`` images, streamed in batches; the ``pds filters estimate`` command uses it.
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pds.storage import DATA_DIR

__all__ = [
    "NATURAL_PHOTOS",
    "DEBIAN_FASHION_MNIST",
    "DataNotFoundError",
    "read_idx",
    "find_idx",
    "load_idx_images",
    "load_idx_labels",
    "list_image_files",
    "load_image_folder",
    "iter_image_folder",
    "natural_photographs",
    "natural_image_crops",
    "aligned_faces",
    "dataset_batches",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# colour photographs of natural scenes and objects shipped with scikit-image (skimage.data)
NATURAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}


class DataNotFoundError(FileNotFoundError):
    """Data is not where it was looked for; the message says where it looked and how to get it."""


# -- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------
def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a read-only numpy array, checking its header and size. The
    last few files read are kept (by path, size and modification time): the notebooks read the same sets often."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file {path} does not exist")
    stat = path.stat()
    return _read_idx(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_idx(path: Path, size: int, mtime_ns: int) -> np.ndarray:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() if raw else '(empty)'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says {dims} of {dtype} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data (corrupt or truncated)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _candidate_dirs(dataset: str, path) -> list[Path]:
    dirs: list[Path] = []
    if path is not None:
        dirs += [Path(path), Path(path) / dataset]
    if os.environ.get("PDS_DATA"):
        dirs += [Path(os.environ["PDS_DATA"]) / dataset, Path(os.environ["PDS_DATA"])]
    dirs += [DATA_DIR / "raw" / dataset, DATA_DIR / "raw"]
    if dataset == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def _how_to_get(dataset: str) -> str:
    if dataset == "fashion-mnist":
        return ("install Debian's package with `make data` (or `sudo apt-get install dataset-fashion-mnist`), "
                "or put the four IDX files in data/raw/fashion-mnist/ or $PDS_DATA/fashion-mnist/")
    return (f"download the four IDX files of {dataset} (train/t10k images/labels, .gz or not) into "
            f"data/raw/{dataset}/ or $PDS_DATA/{dataset}/, or pass path=")


def find_idx(dataset: str = "fashion-mnist", split: str = "train", kind: str = "images", path=None) -> Path:
    """Locate ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` of ``dataset``.

    Looks in: ``path`` (a file is returned as is; a folder and its ``dataset`` subfolder),
    ``$PDS_DATA``, ``data/raw/`` and, for Fashion-MNIST, Debian's /usr/share/datasets/fashion-mnist.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if kind not in ("images", "labels"):
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}")
    if path is not None and Path(path).is_file():
        return Path(path)
    if path is not None and not Path(path).exists():
        raise DataNotFoundError(f"{path} does not exist; {_how_to_get(dataset)}")
    stem = f"{_SPLITS[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    dirs = _candidate_dirs(dataset, path)
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    looked = ", ".join(str(d) for d in dict.fromkeys(dirs))
    raise DataNotFoundError(f"no {stem}[.gz] for {dataset} in: {looked}. To get it: {_how_to_get(dataset)}")


def load_idx_images(dataset: str = "fashion-mnist", split: str = "train", path=None, n: int | None = None,
                    seed: int = 0, at_most: bool = False) -> torch.Tensor:
    """Images of an IDX data set as float32 [N, 1, H, W] in [0, 1]; ``n`` picks a seeded subset (more than the
    file holds is an error, unless ``at_most``: then all are used)."""
    arr = read_idx(find_idx(dataset, split, "images", path))
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W] in the IDX file, got {arr.dtype} {arr.shape}")
    idx = _choose(len(arr), None if (at_most and n is not None and n >= len(arr)) else n, seed)
    return torch.from_numpy(arr[idx].astype(np.float32) / 255.0)[:, None]


def load_idx_labels(dataset: str = "fashion-mnist", split: str = "train", path=None) -> torch.Tensor:
    arr = read_idx(find_idx(dataset, split, "labels", path))
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D label array, got shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.int64))


def _choose(total: int, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= total:
        if n is not None and n > total:
            raise ValueError(f"asked for {n} images but only {total} are available")
        return np.arange(total)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


# -- image folders -------------------------------------------------------------------------------
def list_image_files(folder) -> list[Path]:
    """PNG/JPEG files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"image folder {folder} does not exist; export the data set as PNG/JPEG files there "
            "(e.g. LSUN via its export script, FFHQ's images1024x1024/) and pass that folder"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataNotFoundError(f"no .png/.jpg/.jpeg files under {folder}")
    return files


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            if side != size:
                im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return np.clip(arr, 0.0, 1.0)


def iter_image_folder(folder, size: int, n: int | None = None, seed: int = 0, batch_size: int = 64,
                      channels: int = 3) -> Iterator[torch.Tensor]:
    """Stream a (seeded) choice of ``n`` images under ``folder`` as batches [B, C, size, size]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    files = list_image_files(folder)
    chosen = [files[i] for i in _choose(len(files), n, seed)]
    for start in range(0, len(chosen), batch_size):
        batch = [_load_image(p, size, channels) for p in chosen[start : start + batch_size]]
        yield torch.from_numpy(np.stack(batch))


def load_image_folder(folder, size: int, n: int | None = None, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """All (or a seeded choice of ``n``) images under ``folder``, centre-cropped and resized: [N, C, size, size]."""
    return torch.cat(list(iter_image_folder(folder, size, n, seed, channels=channels)))


# -- stand-ins bundled with scikit-image ---------------------------------------------------------
def natural_photographs() -> list[np.ndarray]:
    """The bundled colour photographs as float arrays [3, H, W] in [0, 1]."""
    from skimage import data as skdata

    return [np.moveaxis(getattr(skdata, name)()[..., :3], -1, 0).astype(np.float64) / 255.0 for name in NATURAL_PHOTOS]


def natural_image_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size``×``size`` RGB crops (seeded) of the bundled photographs, [n, 3, size, size].

    Photos are chosen uniformly, positions uniformly inside the photo; a crop larger than a photo's
    shorter side is refused (the smallest photo is 300 pixels high).
    """
    photos = natural_photographs()
    if n < 1 or size < 1:
        raise ValueError(f"n and size must be >= 1, got n={n}, size={size}")
    usable = [p for p in photos if min(p.shape[1:]) >= size]
    if not usable:
        largest = max(min(p.shape[1:]) for p in photos)
        raise ValueError(f"no bundled photograph is at least {size}×{size} (the largest fits {largest}×{largest})")
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), dtype=np.float32)  # filled from float64 photos, rounded as .float() would
    for i in range(n):
        p = usable[rng.integers(len(usable))]
        top = rng.integers(0, p.shape[1] - size + 1)
        left = rng.integers(0, p.shape[2] - size + 1)
        out[i] = p[:, top : top + size, left : left + size]
    return torch.from_numpy(out)


def aligned_faces(n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The 100 aligned 25×25 grey faces of scikit-image's LFW subset, [N, 1, 25, 25] in [0, 1]."""
    from skimage import data as skdata

    faces = skdata.lfw_subset()[:100].astype(np.float32)  # the first 100 are faces, the rest not
    return torch.from_numpy(faces[_choose(len(faces), n, seed)])[:, None].clamp(0, 1)


def dataset_batches(spec: str, size: int | None = None, n: int | None = 200, seed: int = 0,
                    batch_size: int = 64) -> tuple[Iterator[torch.Tensor], dict]:
    """A seeded choice of ``n`` images of a data specification, as batches, plus its description.

    ``spec``: "fashion-mnist" or "mnist" (IDX, size 28), "natural-crops" (needs ``size``),
    "faces" (25×25), an IDX file, or a folder of images (needs ``size``). Returns (batches, metadata).
    """
    if spec in ("fashion-mnist", "mnist") or spec.endswith(("-ubyte", "-ubyte.gz")):
        dataset = spec if spec in ("fashion-mnist", "mnist") else "idx"
        images = load_idx_images(dataset, "train", path=None if dataset != "idx" else spec, n=n, seed=seed,
                                 at_most=True)
        if size is not None and size != images.shape[-1]:
            raise ValueError(f"{spec} images are {images.shape[-1]}×{images.shape[-1]}; --size {size} does not match")
        source = f"{spec} (IDX, train split)"
    elif spec == "natural-crops":
        if size is None:
            raise ValueError("natural-crops needs a size")
        images = natural_image_crops(n or 200, size, seed)
        source = f"random crops of scikit-image photographs {', '.join(NATURAL_PHOTOS)} (stand-in for scene data)"
    elif spec == "faces":
        images = aligned_faces(None if n is None else min(n, 100), seed)  # 100 exist: n above that takes all
        if size is not None and size != 25:
            raise ValueError(f"faces are 25×25; --size {size} does not match")
        source = "scikit-image LFW subset, first 100 (faces; stand-in for an aligned face data set)"
    else:
        if not Path(spec).exists():
            raise FileNotFoundError(f"--data {spec} does not exist (no such file or folder); give fashion-mnist, "
                                    "mnist, natural-crops, faces, an IDX file or a folder of images")
        if size is None:
            raise ValueError(f"{spec}: an image folder needs a size (--size)")
        files = list_image_files(spec)
        count = len(files) if n is None else min(n, len(files))
        meta = {"source": f"image folder {spec}", "n": count, "seed": seed, "size": [size, size]}
        return iter_image_folder(spec, size, count, seed, batch_size), meta
    meta = {"source": source, "n": len(images), "seed": seed, "size": list(images.shape[-2:])}
    return (images[i : i + batch_size] for i in range(0, len(images), batch_size)), meta
