"""Exact output distributions of the samplers for a stationary Gaussian target.

The modules (recursions and dense re-exported here): README.md, "The package".

For a :class:`pds.scores.StationaryGaussianScore` target (covariance diagonal in the 2-D Fourier
basis, eigenvalues s_k) and a preconditioner with a frequency filter only (no space filter, which
would couple frequencies), every sampler step acts on each coefficient ŷ_k of the unitary DFT as
an independent scalar linear recursion

    ŷ_k ← a_k ŷ_k + (1 − a_k) m̂_k + c_k ξ̂_k,

where m̂ is the target mean and ξ̂ white noise. So the output is Gaussian (for a Gaussian start)
with per-frequency mean and variance that follow

    δ_k ← a_k δ_k   (δ = E[ŷ] − m̂),      v_k ← |a_k|² v_k + c_k².

The Wasserstein-2 distance to the target then has the closed form
W2² = Σ_k |δ_k|² + Σ_k (√v_k − √s_k)², and KL = ½ Σ_k [v_k/s_k − 1 − log(v_k/s_k) + |δ_k|²/s_k].
Sums run over all H·W frequencies of every channel, computed on the rfft half plane with
multiplicities; frequencies whose parameters (target variance, preconditioner gain, solenoidal
symbol, target mean) coincide are merged first, which is exact and makes radially symmetric models
at 1024² cheap.

Corrector step. The released PC sampler sets ε = 2(snr·mean_b‖n‖/mean_b‖g‖)² from the batch. Here
ε = 2·snr²·E‖n‖²/E‖g‖², the *expected* squared norms under the current exact distribution; in high
dimension the norms concentrate and the two agree to O(1/d). The steps used are returned, and the
samplers accept them (``corrector=``) so that Monte Carlo runs can be checked against this
computation exactly.

For annealed Langevin with ``init="uniform"`` the start is not Gaussian: mean and covariance are
still exact, and the W2 reported is that of the Gaussian with those moments, a lower bound on the
true W2 (Gelbrich's bound).
"""

from pds.exact import dense, recursions
from pds.exact.dense import *  # noqa: F403  (dense counterparts for small images)
from pds.exact.recursions import *  # noqa: F403  (the recursions' code lives in pds.exact.recursions)

__all__ = list(recursions.__all__) + list(dense.__all__)
