"""pds.models.local_score.LocalScore (Kamb & Ganguli's LS / ELS machines): equal to a brute-force loop over every pixel,
patch and candidate in float64 (1e-10), its limits (a patch covering the image: the exact empirical score; one pixel:
each pixel's marginal), translation equivariance of ELS (periodic boundary) and not of LS, and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pds.empirical import EmpiricalScore
from pds.models.local_score import LocalScore


def brute_force(X, x, sigma, k, equivariant, padding):
    """D(x, σ) pixel by pixel: every candidate patch written out, the softmax over them, the centre pixels averaged."""
    N, C, H, W = X.shape
    r = k // 2

    def patch(img, p):
        out = torch.zeros(C, k, k, dtype=torch.float64)
        for u, v in itertools.product(range(-r, r + 1), repeat=2):
            y, z = p[0] + u, p[1] + v
            if padding == "circular":
                y, z = y % H, z % W
            elif not (0 <= y < H and 0 <= z < W):
                continue
            out[:, u + r, v + r] = img[:, y, z]
        return out

    D = torch.zeros_like(x)
    for b in range(len(x)):
        for p in itertools.product(range(H), range(W)):
            xp = patch(x[b], p)
            qs = list(itertools.product(range(H), range(W))) if equivariant else [p]
            logits = torch.stack([-((xp - patch(X[i], q)) ** 2).sum() / (2 * sigma**2) for i in range(N) for q in qs])
            centres = torch.stack([X[i][:, q[0], q[1]] for i in range(N) for q in qs])
            D[b, :, p[0], p[1]] = (torch.softmax(logits, 0)[:, None] * centres).sum(0)
    return D


@pytest.mark.parametrize("equivariant", [False, True], ids=["LS", "ELS"])
@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_equals_the_brute_force_loop_in_float64(equivariant, padding, k):
    gen = torch.Generator().manual_seed(k)
    X = torch.rand(3, 2, 4, 5, dtype=torch.float64, generator=gen)
    x = X[:2] + 0.3 * torch.randn(2, 2, 4, 5, dtype=torch.float64, generator=gen)
    machine = LocalScore(X, k, equivariant=equivariant, padding=padding, chunk=2)
    for sigma in (0.05, 0.4, 3.0):
        want = brute_force(X, x, sigma, k, equivariant, padding)
        torch.testing.assert_close(machine.posterior_mean(x, sigma), want, rtol=0, atol=1e-10)
        torch.testing.assert_close(machine(x, sigma), (want - x) / sigma**2, rtol=1e-10, atol=1e-10)


def test_a_patch_covering_the_image_is_the_exact_empirical_score():
    X = torch.rand(6, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = EmpiricalScore(X, dtype=torch.float64)
    for k in (9, 11):  # k ≥ 2·max(H, W) − 1: every pixel's patch holds the whole image
        for sigma in (0.1, 1.0):
            torch.testing.assert_close(LocalScore(X, k, equivariant=False)(x, sigma), exact(x, sigma), rtol=1e-10,
                                       atol=1e-10)


def test_one_pixel_patches_are_the_marginals():
    X = torch.rand(7, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigma = 0.2
    # LS: at each pixel, the set's values at that pixel weighted by their likelihood there
    w = torch.softmax(-((x[:, None] - X[None]) ** 2).sum(2) / (2 * sigma**2), dim=1)  # [B, N, H, W]
    torch.testing.assert_close(LocalScore(X, 1, equivariant=False).posterior_mean(x, sigma),
                               torch.einsum("bnhw,nchw->bchw", w, X), rtol=0, atol=1e-12)
    # ELS: every pixel of every image is a candidate for every pixel: the pooled marginal
    pool = X.permute(0, 2, 3, 1).reshape(-1, 3)  # [N·H·W, C]
    flat = x.permute(0, 2, 3, 1).reshape(-1, 3)
    w = torch.softmax(-((flat[:, None] - pool[None]) ** 2).sum(-1) / (2 * sigma**2), dim=1)
    want = (w @ pool).reshape(2, 4, 4, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(LocalScore(X, 1).posterior_mean(x, sigma), want, rtol=0, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(dy=st.integers(0, 4), dx=st.integers(0, 5), k=st.sampled_from([1, 3, 5]), sigma=st.floats(0.05, 2.0))
def test_els_is_translation_equivariant_and_ls_is_not(dy, dx, k, sigma):
    X = torch.rand(4, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = torch.rand(2, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    roll = lambda t: torch.roll(t, (dy, dx), dims=(-2, -1))  # noqa: E731
    els = LocalScore(X, k, padding="circular")
    torch.testing.assert_close(els(roll(x), sigma), roll(els(x, sigma)), rtol=1e-9, atol=1e-9)
    if (dy, dx) != (0, 0) and k == 3 and sigma < 0.5:
        ls = LocalScore(X, k, equivariant=False, padding="circular")
        assert not torch.allclose(ls(roll(x), sigma), roll(ls(x, sigma)), rtol=1e-6, atol=1e-6)


def test_patch_schedules_dtypes_and_bad_input():
    X = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    x = torch.rand(2, 1, 4, 4)
    machine = LocalScore(X, lambda sigma: 5 if sigma > 0.5 else 1, dtype=torch.float32)
    assert machine.patch_size(1.0) == 5 and machine.patch_size(0.1) == 1
    out = machine(x, torch.tensor([0.1, 1.0]))  # one patch size per distinct σ in the batch
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out[1:], LocalScore(X, 5)(x[1:].double(), 1.0).float(), rtol=1e-4, atol=1e-4)
    for bad, match in ((4, "odd positive"), (0, "odd positive"), (2.5, "odd positive")):
        with pytest.raises(ValueError, match=match):
            LocalScore(X, bad)
    with pytest.raises(ValueError, match="odd positive"):
        LocalScore(X, lambda s: 2)(x.double(), 1.0)
    with pytest.raises(ValueError, match="padding"):
        LocalScore(X, 3, padding="reflect")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        LocalScore(X, 3)(x.double(), 0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        LocalScore(X, 3)(torch.rand(2, 1, 5, 5, dtype=torch.float64), 1.0)


def test_a_large_batch_in_blocks_equals_each_sample_alone():
    """ELS takes its B·H·W query patches 512 at a time: a batch of 600 queries equals its samples one by one."""
    X = torch.rand(3, 1, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x = torch.rand(30, 1, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    machine = LocalScore(X, 3)
    whole = machine.posterior_mean(x, 0.3)
    torch.testing.assert_close(whole, torch.cat([machine.posterior_mean(x[i : i + 1], 0.3) for i in range(30)]),
                               rtol=0, atol=1e-12)


def test_patch_schedule_takes_the_nearest_calibrated_level_in_log_sigma():
    from pds.models.local_score import PatchSchedule

    sched = PatchSchedule((1.0, 0.1, 3.0), (15, 3, 9))  # any order
    assert sched.sigmas == [0.1, 1.0, 3.0] and sched.ks == [3, 15, 9]
    assert [sched(s) for s in (1e-3, 0.3, 0.32, 1.7, 1.8, 1e3)] == [3, 3, 15, 15, 9, 9]  # √0.1 ≈ 0.316, √3 ≈ 1.73
    assert PatchSchedule.from_dict(sched.to_dict()).to_dict() == sched.to_dict()
    with pytest.raises(ValueError, match="one k per noise level"):
        PatchSchedule((0.1, 1.0), (3,))
    for bad in (((0.1, 0.1), (3, 5)), ((0.0,), (3,)), ((0.1,), (4,)), ((), ())):
        with pytest.raises(ValueError):
            PatchSchedule(*bad)


def test_fingerprint_tells_schedules_and_sets_apart_and_not_float32_rounding():
    from pds.models.local_score import PatchSchedule

    X = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    base = LocalScore(X, PatchSchedule((0.1, 1.0), (3, 5)), dtype=torch.float32).fingerprint()
    same = LocalScore(X.clone(), PatchSchedule((1.0, 0.1), (5, 3)), dtype=torch.float32).fingerprint()
    assert same.id == base.id
    assert LocalScore(X, PatchSchedule((0.1, 1.0), (3, 7)), dtype=torch.float32).fingerprint().id != base.id
    assert LocalScore(X, 3, dtype=torch.float32).fingerprint().id != base.id
    assert LocalScore(X, 3, equivariant=False, dtype=torch.float32).fingerprint().id != \
        LocalScore(X, 3, dtype=torch.float32).fingerprint().id
    nudged = X * (1 + 1e-7 * torch.randn(X.shape, generator=torch.Generator().manual_seed(1)))
    assert LocalScore(nudged, PatchSchedule((0.1, 1.0), (3, 5)), dtype=torch.float32).fingerprint().same(base)
    assert not LocalScore(X[:2], PatchSchedule((0.1, 1.0), (3, 5)), dtype=torch.float32).fingerprint().same(base)


def authors_rule(X, x, sigma, k, padding):
    """The authors' ELS rules, pixel by pixel, written from their description (not from the class): the query is the
    k × k window at p, wrapped (circular) or cut at the edges (zeros); the candidates are the positions q whose window
    the edges cut by as many rows and columns on each side as p's (circular: those no edge cuts), compared on the
    window's in-image part only; D_p is the softmax average of their centre pixels."""
    N, C, H, W = X.shape
    r = k // 2

    def cut(i, n):
        return max(0, r - i), max(0, i + r - (n - 1))

    def window(img, p, wrap):
        ys = [(p[0] + u) % H if wrap else p[0] + u for u in range(-r, r + 1)]
        zs = [(p[1] + v) % W if wrap else p[1] + v for v in range(-r, r + 1)]
        ys, zs = [y for y in ys if 0 <= y < H], [z for z in zs if 0 <= z < W]
        return img[:, ys][:, :, zs]

    D = torch.zeros_like(x)
    for b in range(len(x)):
        for p in itertools.product(range(H), range(W)):
            want = ((0, 0), (0, 0)) if padding == "circular" else (cut(p[0], H), cut(p[1], W))
            qs = [q for q in itertools.product(range(H), range(W)) if (cut(q[0], H), cut(q[1], W)) == want]
            xp = window(x[b], p, wrap=padding == "circular")
            logits = torch.stack([-((xp - window(X[i], q, wrap=False)) ** 2).sum() / (2 * sigma**2)
                                  for i in range(N) for q in qs])
            centres = torch.stack([X[i][:, q[0], q[1]] for i in range(N) for q in qs])
            D[b, :, p[0], p[1]] = (torch.softmax(logits, 0)[:, None] * centres).sum(0)
    return D


@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_the_authors_els_rules_equal_their_brute_force(padding, k):
    g = torch.Generator().manual_seed(k)
    X = torch.rand(3, 2, 6, 7, generator=g, dtype=torch.float64)
    x = X[:2] + 0.3 * torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64)
    machine = LocalScore(X, k, padding=padding, candidates="inside")
    for sigma in (0.1, 0.6):
        want = authors_rule(X, x, sigma, k, padding)
        assert torch.allclose(machine.posterior_mean(x, sigma), want, rtol=0, atol=1e-10)


def test_the_authors_rules_in_their_limits_and_without_the_padding_value():
    """k = 1: both rules (and the all-patches machine) compare every pixel with every pixel; the boundary-broken ELS
    with a patch covering the image is the exact empirical score; a shift of images and x by a constant shifts D by
    it (the padding value never enters), while the all-patches machine with zeros changes; the circular rule refuses
    a patch larger than the images."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(4, 1, 5, 6, generator=g, dtype=torch.float64)
    x = X[:2] + 0.2 * torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64)
    one = [LocalScore(X, 1, padding=p, candidates=c).posterior_mean(x, 0.3)
           for p in ("zeros", "circular") for c in ("inside", "all")]
    assert all(torch.allclose(d, one[0], rtol=0, atol=1e-12) for d in one[1:])
    covering = LocalScore(X, 11, padding="zeros", candidates="inside").posterior_mean(x, 0.4)
    assert torch.allclose(covering, EmpiricalScore(X, dtype=torch.float64).posterior_mean(x, 0.4), rtol=0, atol=1e-10)
    for padding in ("zeros", "circular"):
        base = LocalScore(X, 3, padding=padding, candidates="inside").posterior_mean(x, 0.3)
        shifted = LocalScore(2 * X - 1, 3, padding=padding, candidates="inside").posterior_mean(2 * x - 1, 0.6)
        assert torch.allclose(shifted, 2 * base - 1, rtol=0, atol=1e-10)  # [0, 1] → [−1, 1], σ scaled alike
    old = LocalScore(X, 3, padding="zeros").posterior_mean(x, 0.3)
    old_shifted = LocalScore(2 * X - 1, 3, padding="zeros").posterior_mean(2 * x - 1, 0.6)
    assert (old_shifted - (2 * old - 1)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="no patch lies inside an image"):
        LocalScore(X, 7, padding="circular", candidates="inside").posterior_mean(x, 0.3)
    with pytest.raises(ValueError, match="candidates must be 'all' or 'inside'"):
        LocalScore(X, 3, equivariant=False, candidates="inside")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_storing_each_distinct_patch_once_changes_nothing(dtype):
    """Deduplication (identical candidate patches stored once, weighted by their multiplicity) is exact: on images with
    zero borders and a repeated texture, where many patches repeat, the authors' machines agree with and without it
    (to rounding: 1e-12 in float64, 1e-5 in float32), at small σ (a few candidates weigh) and large."""
    g = torch.Generator().manual_seed(5)
    X = torch.zeros(4, 1, 9, 9, dtype=torch.float64)
    X[:, :, 2:7, 2:7] = (torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64) > 0.5).double()
    x = (X[:2] + 0.2 * torch.randn(2, 1, 9, 9, generator=g, dtype=torch.float64)).to(dtype)
    for padding in ("zeros", "circular"):
        once, each = (LocalScore(X, 3, padding=padding, candidates="inside", dtype=dtype, dedup=d)
                      for d in (True, False))
        for sigma in (0.05, 0.5):
            a, b = once.posterior_mean(x, sigma), each.posterior_mean(x, sigma)
            assert torch.allclose(a, b, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
        stored, all_of_them = (sum(e.n for e in m._per_k.values()) for m in (once, each))
        assert stored < 0.6 * all_of_them  # the case is one where deduplication acts


def test_a_weighted_set_is_the_set_with_repeats_and_values_are_averaged_alike():
    """EmpiricalScore(counts=m) equals the set with image i repeated m_i times (posterior mean, score, log density);
    values=v returns Σ w_i v_i with the same weights (here a linear map of the images); a score of values refuses."""
    g = torch.Generator().manual_seed(2)
    X = torch.rand(5, 1, 3, 3, generator=g, dtype=torch.float64)
    m = torch.tensor([1, 3, 2, 1, 4])
    x = X[:3] + 0.3 * torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64)
    repeated = EmpiricalScore(X.repeat_interleave(m, 0), dtype=torch.float64)
    weighted = EmpiricalScore(X, dtype=torch.float64, counts=m)
    for sigma in (0.05, 0.4):
        assert torch.allclose(weighted.posterior_mean(x, sigma), repeated.posterior_mean(x, sigma), atol=1e-12)
        assert torch.allclose(weighted(x, sigma), repeated(x, sigma), atol=1e-9)
        assert torch.allclose(weighted.log_density(x, sigma), repeated.log_density(x, sigma), atol=1e-10)
    A = torch.randn(9, 2, generator=g, dtype=torch.float64)
    valued = EmpiricalScore(X, dtype=torch.float64, counts=m, values=X.reshape(5, -1) @ A)
    assert torch.allclose(valued.posterior_mean(x, 0.2), repeated.posterior_mean(x, 0.2).reshape(3, -1) @ A, atol=1e-12)
    with pytest.raises(ValueError, match="has no score"):
        valued(x, 0.2)
    with pytest.raises(ValueError, match="positive multiplicities"):
        EmpiricalScore(X, counts=torch.tensor([1, 0, 1, 1, 1]))


def pca_locality_rule(X, x, sigma, threshold, batches=None):
    """Lukoianov et al.'s denoiser written from its rule, pixel by pixel in float64: the Wiener matrix by a linear
    solve, each output pixel's mask from its column of W / diag W, a softmax over the images (or within blocks of
    ``batches``, averaged) on the masked squared distance."""
    N, D = len(X), X[0].numel()
    F, f = X.reshape(N, D), x.reshape(len(x), D)
    cov = torch.cov(F.T)
    W = torch.linalg.solve(cov + sigma**2 * torch.eye(D, dtype=torch.float64), cov).T  # Σ(Σ + σ²I)⁻¹
    diag = torch.where(torch.diagonal(W).abs() < 1e-6, 1.0, torch.diagonal(W))
    ratio = torch.stack([torch.stack([(W[n, m] / diag[n]).abs() for m in range(D)]) for n in range(D)])
    M = ratio >= threshold * ratio.max()
    out = torch.zeros(len(x), D, dtype=torch.float64)
    size = batches or N
    for b in range(len(x)):
        for m in range(D):
            means = []
            for a in range(0, N, size):
                d = torch.stack([sum((f[b, n] - F[i, n]) ** 2 for n in range(D) if M[n, m])
                                 for i in range(a, min(a + size, N))])
                w = torch.softmax(-d / (2 * sigma**2), 0)
                means.append((w * F[a : a + size, m]).sum())
            out[b, m] = torch.stack(means).mean()
    return out.reshape(x.shape)


@pytest.mark.parametrize("batches", [None, 3])
def test_the_pca_locality_denoiser_equals_its_rule(batches):
    """PCALocalityScore equals the brute force of Lukoianov et al.'s rule to 1e-10 (one softmax over the set, and their
    code's per-block softmax averaged); with threshold 0 it is the exact empirical score; bad input is refused."""
    from pds.models.local_score import PCALocalityScore
    from pds.scores import GaussianScore

    g = torch.Generator().manual_seed(7)
    X = torch.rand(8, 1, 3, 4, generator=g, dtype=torch.float64)
    x = X[:2] + 0.3 * torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64)
    wiener = GaussianScore.from_images(X)
    for threshold in (0.1, 0.4):
        machine = PCALocalityScore(X, wiener, threshold, batches=batches, dtype=torch.float64, chunk=3)
        assert 0 < float(machine.mask(0.3).mean()) < 1  # the masks select: the case tests the rule
        for sigma in (0.1, 0.5):
            want = pca_locality_rule(X, x, sigma, threshold, batches)
            assert torch.allclose(machine.posterior_mean(x, sigma), want, rtol=0, atol=1e-10)
    every = PCALocalityScore(X, wiener, 0.0, dtype=torch.float64)
    assert torch.allclose(every.posterior_mean(x, 0.2), EmpiricalScore(X, dtype=torch.float64).posterior_mean(x, 0.2),
                          rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="wiener must be a GaussianScore"):
        PCALocalityScore(X, GaussianScore.from_images(X[:, :, :2]), 0.1)
    with pytest.raises(ValueError, match="threshold"):
        PCALocalityScore(X, wiener, 1.5)


def test_the_wiener_witness_is_the_linear_denoiser_of_the_set():
    """GaussianScore.from_images: mean and unbiased covariance of the set; its denoiser x + σ² s equals
    mean + Σ(Σ + σ²I)⁻¹(x − mean) written with a solve."""
    from pds.scores import GaussianScore

    g = torch.Generator().manual_seed(1)
    X = torch.rand(30, 1, 3, 3, generator=g, dtype=torch.float64)
    x = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64)
    wiener = GaussianScore.from_images(X, batch_size=7)
    F = X.reshape(30, 9)
    assert torch.allclose(wiener.cov, torch.cov(F.T), atol=1e-14)
    cov, mean = torch.cov(F.T), F.mean(0)
    want = mean + torch.linalg.solve(cov + 0.25 * torch.eye(9, dtype=torch.float64), cov @ (x.reshape(4, 9) - mean).T).T
    assert torch.allclose(x + 0.25 * wiener(x, 0.5), want.reshape(x.shape), atol=1e-12)
