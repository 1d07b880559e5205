"""Loaders: IDX (generated fixtures and, where installed, the real Fashion-MNIST), image folders,
stand-ins; bad paths and corrupt files; the filter-estimation command."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from pds.cli import main as cli_main
from pds.filters import estimate_filters, frequency_filter, load_filters, space_filter
from pds.lab.data import (
    DEBIAN_FASHION_MNIST,
    DataNotFoundError,
    aligned_faces,
    dataset_batches,
    find_idx,
    load_idx_images,
    load_idx_labels,
    load_image_folder,
    natural_image_crops,
    read_idx,
)

HAVE_FASHION = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()


def write_idx(path, array: np.ndarray, compress: bool):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 7, 9), dtype=np.uint8)
    labels = rng.integers(0, 10, size=30, dtype=np.uint8)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    write_idx(d / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(d / "train-labels-idx1-ubyte", labels, compress=False)
    return tmp_path, images, labels


def test_read_idx_roundtrip(idx_dir):
    root, images, labels = idx_dir
    np.testing.assert_array_equal(read_idx(root / "fashion-mnist" / "train-images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(read_idx(root / "fashion-mnist" / "train-labels-idx1-ubyte"), labels)
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    write_idx(root / "ints", big, compress=False)
    np.testing.assert_array_equal(read_idx(root / "ints"), big)


def test_load_idx_images_from_pds_data(idx_dir, monkeypatch):
    root, images, labels = idx_dir
    monkeypatch.setenv("PDS_DATA", str(root))
    x = load_idx_images("fashion-mnist")
    assert x.shape == (30, 1, 7, 9) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images / 255.0).float())
    sub = load_idx_images("fashion-mnist", n=10, seed=3)
    assert sub.shape[0] == 10 and torch.equal(sub, load_idx_images("fashion-mnist", n=10, seed=3))
    assert torch.equal(load_idx_labels("fashion-mnist"), torch.from_numpy(labels.astype(np.int64)))
    # an explicit folder wins over $PDS_DATA
    assert find_idx("fashion-mnist", path=root) == root / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(ValueError, match="only 30"):
        load_idx_images("fashion-mnist", n=31)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "bad magic"),
        (b"\x01\x02\x08\x03", "bad magic"),
        (bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 3) + b"\x00" * 5, "truncated"),
        (bytes([0, 0, 8, 3]) + b"\x00\x00", "truncated IDX header"),
    ],
)
def test_corrupt_idx(tmp_path, content, match):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="not a readable IDX"):
        read_idx(path)


def test_missing_idx_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("PDS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="data/raw/mnist") as err:
        find_idx("mnist")
    assert "nowhere" in str(err.value)
    with pytest.raises(DataNotFoundError, match="make data"):
        find_idx("fashion-mnist", path=tmp_path / "missing")
    with pytest.raises(ValueError, match="split"):
        find_idx("mnist", split="valid")


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian's dataset-fashion-mnist is not installed (make data)")
def test_real_fashion_mnist():
    x = load_idx_images("fashion-mnist", "test")
    y = load_idx_labels("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "a" / "b").mkdir(parents=True)
    # a 40×20 image: left half red, right half blue, a green centre square
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]
    arr[:, 20:] = [0, 0, 255]
    arr[8:12, 18:22] = [0, 255, 0]
    Image.fromarray(arr).save(root / "wide.png")
    Image.fromarray(np.full((30, 30), 128, np.uint8)).save(root / "a" / "grey.jpg")
    Image.fromarray(np.full((25, 50, 3), 255, np.uint8)).save(root / "a" / "b" / "white.jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder(image_folder):
    x = load_image_folder(image_folder, size=20)
    assert x.shape == (3, 3, 20, 20) and float(x.min()) >= 0 and float(x.max()) <= 1
    wide = load_image_folder(image_folder, size=20, n=3)[2]  # sorted: a/b/white, a/grey, wide
    # centre crop of the wide image: columns 10..29, so red on the left, blue on the right, green centre
    assert wide[0, 0, 2] > 0.9 and wide[2, 0, -3] > 0.9 and wide[1, 10, 10] > 0.9
    grey = load_image_folder(image_folder, size=8, channels=1)
    assert grey.shape == (3, 1, 8, 8)
    assert torch.equal(load_image_folder(image_folder, 8, n=2, seed=1), load_image_folder(image_folder, 8, n=2, seed=1))


def test_image_folder_errors(image_folder, tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no .png"):
        load_image_folder(tmp_path / "empty", 8)
    (image_folder / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(image_folder, 8)


def test_stand_ins():
    a = natural_image_crops(5, 32, seed=1)
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, natural_image_crops(5, 32, seed=1)) and not torch.equal(a, natural_image_crops(5, 32, seed=2))
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    with pytest.raises(ValueError, match="at least"):
        natural_image_crops(1, 5000)
    faces = aligned_faces()
    assert faces.shape == (100, 1, 25, 25)


def test_estimate_filters_matches_separate_estimators():
    x = natural_image_crops(20, 16, seed=0)
    freq, space, count = estimate_filters(x, batch_size=7)
    assert count == 20
    torch.testing.assert_close(freq, frequency_filter(x))
    torch.testing.assert_close(space, space_filter(x))
    _, paper, _ = estimate_filters(x, variant="paper")
    torch.testing.assert_close(paper, space_filter(x, "paper"))


def test_dataset_batches_specs(image_folder):
    batches, meta = dataset_batches("faces", n=30, seed=0, batch_size=8)
    assert sum(b.shape[0] for b in batches) == 30 and meta["size"] == [25, 25]
    batches, meta = dataset_batches(str(image_folder), size=12, n=10)
    assert meta["n"] == 3 and torch.cat(list(batches)).shape == (3, 3, 12, 12)
    with pytest.raises(ValueError, match="needs a size"):
        dataset_batches("natural-crops")
    with pytest.raises(ValueError, match="25×25"):
        dataset_batches("faces", size=32)


def test_cli_estimate(tmp_path, capsys):
    out = tmp_path / "filters" / "crops.npz"
    rc = cli_main(["filters", "estimate", "--data", "natural-crops", "--size", "16", "--n", "12", "--seed", "4",
                   "--out", str(out), "--quiet"])
    assert rc == 0 and out.exists()
    loaded = load_filters(out)
    assert loaded.freq.shape == (3, 16, 16) and loaded.space.shape == (3, 16, 16)
    assert loaded.metadata["n"] == 12 and loaded.metadata["seed"] == 4 and loaded.metadata["variant"] == "released"
    torch.testing.assert_close(loaded.freq, frequency_filter(natural_image_crops(12, 16, seed=4)))
    rc = cli_main(["filters", "estimate", "--data", str(tmp_path / "nope"), "--size", "8", "--out", str(out)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
