"""Sample-quality metrics, each reported with n, seed, NFE and the reference set.

* :func:`fid_statistics` — FID's statistics through pytorch-fid (InceptionV3 pool features).
  The Inception weights cannot be downloaded here: when they are not in the torch hub cache,
  :class:`InceptionWeightsMissing` says where to put the file (:func:`fid_available` to check first).
* :class:`ClassifierFD` — a Fréchet distance in the feature space of a small Fashion-MNIST classifier
  trained here (:class:`FashionClassifier`), usable offline. It is *not* FID and is never called so.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pds.fingerprint import DATA_RTOL, Approx, Fingerprint, fingerprint
from pds.lab.data import load_idx_images
from pds.storage import BUILD_DIR, DATA_DIR

__all__ = [
    "fashion_test_fd",
    "MetricResult",
    "InceptionWeightsMissing",
    "inception_weights_path",
    "fid_available",
    "frechet_distance",
    "ClassifierFD",
    "gaussian_statistics",
    "fid_statistics",
    "FashionClassifier",
    "train_classifier",
    "classifier_accuracy",
    "load_classifier",
    "classifier_features",
    "image_statistics",
]

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass
class MetricResult:
    name: str
    value: float
    n: int
    reference: str
    seed: int | None = None
    nfe: int | None = None
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.name} = {self.value:.4g} (n={self.n}, seed={self.seed}, NFE={self.nfe}, "
                f"reference: {self.reference})")


class InceptionWeightsMissing(FileNotFoundError):
    pass


def inception_weights_path() -> Path:
    """Where pytorch-fid looks for its Inception weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def fid_available() -> bool:
    return inception_weights_path().is_file()


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance between two Gaussians (pytorch-fid's ``calculate_frechet_distance``); scipy's warning
    about a singular covariance (fewer samples than dimensions, see :class:`ClassifierFD`) is silenced."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*singular.*")
        return float(calculate_frechet_distance(np.asarray(mu1, np.float64), np.asarray(sigma1, np.float64),
                                                np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64)))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least two feature vectors [n, d], got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return images.clamp(0, 1)


def fid_statistics(images: torch.Tensor, batch_size: int = 50, device: str = "cpu"):
    """Inception pool-3 mean and covariance of images [N, C, H, W] in [0, 1] (grey images repeated to RGB)."""
    if not fid_available():
        raise InceptionWeightsMissing(
            f"FID needs pytorch-fid's Inception weights at {inception_weights_path()} (no download here): get "
            f"{INCEPTION_FILE} from pytorch-fid's GitHub release 'fid_weights' and copy it there "
            "(or set $TORCH_HOME). Without it, use classifier_fd or the exact metrics."
        )
    from pytorch_fid.inception import InceptionV3

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    images = _check_images(images)
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            b = images[i : i + batch_size].to(device)
            if b.shape[1] == 1:
                b = b.repeat(1, 3, 1, 1)
            feats.append(model(b)[0].squeeze(-1).squeeze(-1).cpu().numpy())
    return gaussian_statistics(np.concatenate(feats))


class FashionClassifier(nn.Module):
    """A small CNN for 28×28 grey images (Fashion-MNIST); ``features`` is its 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(2.0 * x - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 2, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, progress: bool = False) -> FashionClassifier:
    """Train :class:`FashionClassifier` with Adam (seeded) on images [N, 1, 28, 28] in [0, 1]."""
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FashionClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(images)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in tqdm(range(0, n, batch_size), disable=not progress, desc="classifier", leave=False):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


CLASSIFIER_PATH = DATA_DIR / "checkpoints" / "fashion_classifier.pt"


def load_classifier(path=None) -> FashionClassifier:
    """The shipped Fashion-MNIST feature classifier (``data/checkpoints/fashion_classifier.pt``, made by
    ``pds metrics train-classifier``), or the state dict at ``path``; in eval mode."""
    path = Path(path or CLASSIFIER_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"classifier weights {path} are missing: rebuild them with "
                                "`pds metrics train-classifier --out data/checkpoints/fashion_classifier.pt`")
    model = FashionClassifier()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise ValueError(f"{path} is not a FashionClassifier state dict ({type(exc).__name__}: {exc})") from exc
    return model.eval()


@torch.no_grad()
def classifier_features(model: FashionClassifier, images: torch.Tensor) -> np.ndarray:
    """The 128-d features of images [N, 1, 28, 28] in [0, 1], in batches of 1000."""
    return torch.cat([model.features(_check_images(images[i : i + 1000])) for i in range(0, len(images), 1000)]).numpy()


@torch.no_grad()
def classifier_accuracy(model: FashionClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    preds = torch.cat([model(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
    return float((preds == labels).float().mean())


class ClassifierFD:
    """Fréchet distance in the feature space of a :class:`FashionClassifier` to a fixed reference set
    (not FID). The reference statistics are computed once; call with samples [N, 1, 28, 28] in [0, 1].

    With fewer samples than feature dimensions (128) the sample covariance is singular; the distance
    is still defined (and biased upward, more so for small n), so scipy's warning about it is
    silenced and ``extra["n_below_dim"]`` records the case. Compare values only at the same n.
    """

    name = "classifier-feature FD (Fashion-MNIST CNN, not FID)"

    def __init__(self, model: FashionClassifier, reference: torch.Tensor, reference_name: str, memo=None):
        """``memo``: a folder where the reference statistics are kept between processes, under a key made of this
        module's source, the classifier's weights, the reference images' bytes and this process's float kernels
        (torch version, ATen's CPU capability, the oneDNN / OpenBLAS settings), so that a process computing otherwise
        never reads them."""
        self.model = model.eval()
        self.reference_name = reference_name
        self.mu, self.sigma = self._statistics(reference, memo)
        self.recipe = None  # how to build this metric again (fashion_test_fd sets it), for pds.lab.recompute.rebuild
        self._reference_images = reference.detach()
        self._shape = list(reference.shape[1:])
        self._fingerprint = None

    def _statistics(self, reference: torch.Tensor, memo) -> tuple[np.ndarray, np.ndarray]:
        if memo is None:
            return gaussian_statistics(classifier_features(self.model, reference))
        digest = hashlib.sha256(Path(__file__).read_bytes())  # the code of the features: a change there recomputes
        for name, value in self.model.state_dict().items():
            digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        digest.update(reference.detach().cpu().contiguous().numpy().tobytes())
        digest.update(repr((torch.__version__, torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(),
                            [os.environ.get(k) for k in KERNEL_SETTINGS])).encode())
        path = Path(memo) / f"{digest.hexdigest()[:32]}.npz"
        if path.is_file():
            with np.load(path) as kept:
                return kept["mu"], kept["sigma"]
        mu, sigma = gaussian_statistics(classifier_features(self.model, reference))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")  # one per process: two may compute it at once
        np.savez(tmp, mu=mu, sigma=sigma)
        os.replace(tmp, path)
        return mu, sigma

    def fingerprint(self) -> Fingerprint:
        """What this metric computes (:mod:`pds.fingerprint`): the classifier with its own weights in float64 on 256
        fixed random images, the Fréchet distance of those features to the features of 256 others (float64; scipy's
        matrix square root, compared to 1e-8), and the reference images' values. A result cache keys its runs with
        it."""
        if self._fingerprint is None:
            model64 = copy.deepcopy(self.model).double().eval()
            sets = [torch.rand(256, *self._shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                    for s in (0, 1)]
            feats = [classifier_features(model64, x) for x in sets]
            fd = frechet_distance(*gaussian_statistics(feats[0]), *gaussian_statistics(feats[1]))
            reference = fingerprint("reference images", Approx(self._reference_images, DATA_RTOL))
            self._fingerprint = fingerprint(self.name, feats[0], Approx(float(fd), 1e-8), reference)
        return self._fingerprint

    def __call__(self, samples: torch.Tensor, nfe=None, seed=None) -> MetricResult:
        f = classifier_features(self.model, samples)
        value = frechet_distance(*gaussian_statistics(f), self.mu, self.sigma)
        return MetricResult(self.name, value, len(samples), self.reference_name, seed, nfe,
                            extra={"n_below_dim": len(samples) <= f.shape[1]})


TEST_SET = "Fashion-MNIST test set"
# the settings that change how float32 kernels round in this process (a memo computed under others is not read)
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "MKL_CBWR", "OMP_NUM_THREADS")


def fashion_test_fd() -> ClassifierFD:
    """The classifier-feature FD against the 10 000 Fashion-MNIST test images (the notebooks' FD of trained models)."""
    fd = ClassifierFD(load_classifier(), load_idx_images("fashion-mnist", "test"), TEST_SET,
                      memo=BUILD_DIR / "cache" / "classifier-fd")
    fd.recipe = {"classifier_fd": "fashion-mnist/test"}
    return fd


def image_statistics(images: torch.Tensor) -> dict:
    """Brightness and contrast of images in [0, 1]: the mean pixel value and the mean over images of the pixel
    standard deviation (a "pale" sample set has a lower contrast than the data)."""
    x = _check_images(images).flatten(1).double()
    return {"mean": float(x.mean()), "contrast": float(x.std(dim=1).mean())}
