from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from pds.lab.data import DEBIAN_FASHION_MNIST, load_idx_images, load_idx_labels
from pds.lab.metrics import (
    ClassifierFD,
    FashionClassifier,
    InceptionWeightsMissing,
    classifier_accuracy,
    fid_statistics,
    frechet_distance,
    train_classifier,
)
from pds.storage import REPO_ROOT

HAVE_FASHION = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
SHIPPED = REPO_ROOT / "data" / "checkpoints" / "fashion_classifier.pt"


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    s1, s2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    root = scipy.linalg.sqrtm(scipy.linalg.sqrtm(s1) @ s2 @ scipy.linalg.sqrtm(s1)).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_fid_says_where_the_weights_go(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InceptionWeightsMissing, match="pt_inception-2015-12-05-6726825d.pth"):
        fid_statistics(torch.rand(2, 3, 32, 32))


@pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST not installed (make data)")
def test_shipped_classifier_accuracy_and_fd():
    model = FashionClassifier()
    model.load_state_dict(torch.load(SHIPPED, weights_only=True))
    test_x, test_y = load_idx_images("fashion-mnist", "test"), load_idx_labels("fashion-mnist", "test")
    acc = classifier_accuracy(model.eval(), test_x, test_y)
    assert acc >= 0.90, acc
    train = load_idx_images("fashion-mnist", "train", n=2000, seed=1)
    fd = ClassifierFD(model, train, "train subset")
    same, noise = fd(test_x[:2000]), fd(torch.rand(2000, 1, 28, 28))
    assert same.value < 0.1 * noise.value and "not FID" in same.name


def test_train_classifier_is_seeded():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    a = train_classifier(x, y, epochs=1, batch_size=32, seed=3)
    b = train_classifier(x, y, epochs=1, batch_size=32, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_reference_statistics_memo_is_read_back_and_keyed_by_the_kernels(tmp_path, monkeypatch):
    """The memo of the reference statistics gives what a computation gives; a second metric reads the file (a
    planted value comes back); another kernel setting or another reference makes a new file instead."""
    model = FashionClassifier().eval()
    reference = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain = ClassifierFD(model, reference, "random")
    kept = ClassifierFD(model, reference, "random", memo=tmp_path)
    assert np.array_equal(plain.mu, kept.mu) and np.array_equal(plain.sigma, kept.sigma)
    (path,) = tmp_path.glob("*.npz")
    np.savez(path, mu=kept.mu + 1.0, sigma=kept.sigma)
    assert np.array_equal(ClassifierFD(model, reference, "random", memo=tmp_path).mu, kept.mu + 1.0)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert np.array_equal(ClassifierFD(model, reference, "random", memo=tmp_path).mu, kept.mu)
    assert np.array_equal(ClassifierFD(model, reference[:200], "random", memo=tmp_path).mu,
                          ClassifierFD(model, reference[:200], "random").mu)
    assert len(list(tmp_path.glob("*.npz"))) == 3 and not list(tmp_path.glob("*tmp*"))
