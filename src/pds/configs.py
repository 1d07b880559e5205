"""Settings of every experiment in the paper, as one table the notebooks read.

Sources: the paper (Sec. 5, Fig. 1, 3-5, Tables 1-2) and the official configurations of the upstream
models (ermongroup/ncsn, ermongroup/ncsnv2, yang-song/score_sde_pytorch), as summarised in
``../shared/reference/official-implementation.md``. Where the paper leaves a value open it is None and
``notes`` says so; nothing here is a measured number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Experiment", "EXPERIMENTS", "experiment", "STAND_INS"]


@dataclass(frozen=True)
class Experiment:
    name: str
    figure: str
    model: str  # ncsn | ncsnv2deeper | ncsnpp
    dataset: str
    size: int
    sampler: str  # annealed_langevin | pc
    sigma_max: float
    sigma_min: float
    levels: int  # NCSN/NCSNv2: noise levels; NCSN++: num_scales (PC iterations at full length)
    vanilla_T: int  # iterations of the paper's vanilla baseline
    pds_T: tuple  # iterations the paper reports for PDS
    filter: str  # parametric | statistics R | statistics R + space A
    step_lr: float | None = None
    n_steps_each: int | None = None
    snr: float | None = None
    r: float | None = None  # parametric filter radius, in units of H
    lam: float | None = None
    denoise: bool = False
    init: str = "uniform"
    ncsnpp_config: str | None = None  # key of pds.models.OFFICIAL_CONFIGS
    paper_results: dict = field(default_factory=dict)
    notes: str = ""
    checkpoint: str | None = None  # folder of the official checkpoint under $PDS_CHECKPOINTS (find_checkpoint)
    filters_file: str | None = None  # statistics filters estimated from the user's data, under data/filters/
    upstream: str = ""  # where the checkpoint is published


SCORE_SDE = "yang-song/score_sde_pytorch (README: checkpoints; the VE continuous NCSN++ models)"
EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment("mnist_ncsn", "Fig. 3", "ncsn", "MNIST", 28, "annealed_langevin", 1.0, 0.01, 10, 1000, (20,),
                   "parametric", step_lr=2e-5, n_steps_each=100, r=0.2, lam=1.6, denoise=False,
                   checkpoint="ncsn_mnist",
                   upstream="ermongroup/ncsn (README: pretrained checkpoints)",
                   notes="NCSN v1 official MNIST settings (anneal.yml); no final denoising; uniform start."),
        Experiment("church_ncsnv2", "Fig. 4", "ncsnv2deeper", "LSUN church", 96, "annealed_langevin", 140.0, 0.01,
                   788, 3152, (156,), "parametric", step_lr=4.9e-6, n_steps_each=4, denoise=True,
                   checkpoint="ncsnv2_church",
                   upstream="ermongroup/ncsnv2 (README: pretrained checkpoints)",
                   notes="Paper: 96²; one official yml says 64. Parametric (r, λ) 'enhancing details' is not given."),
        Experiment("tower_ncsnv2", "Fig. 4", "ncsnv2deeper", "LSUN tower", 128, "annealed_langevin", 190.0, 0.01, 1086,
                   3258, (108,), "parametric", step_lr=1.8e-6, n_steps_each=3, denoise=True, checkpoint="ncsnv2_tower",
                   upstream="ermongroup/ncsnv2 (README: pretrained checkpoints)",
                   notes="Parametric (r, λ) 'enhancing details' is not given in the paper."),
        Experiment("bedroom_ncsnpp", "Fig. 5, 6", "ncsnpp", "LSUN bedroom", 256, "pc", 378.0, 0.01, 2000, 2000, (166,),
                   "statistics R", snr=0.075, denoise=True, init="gaussian", ncsnpp_config="bedroom",
                   checkpoint="ncsnpp_bedroom", filters_file="lsun-bedroom-256.npz", upstream=SCORE_SDE,
                   paper_results={"seconds_batch8_rtx3090": {"vanilla": 1173, "pds": 90}}),
        Experiment("church_ncsnpp", "Fig. 5", "ncsnpp", "LSUN church", 256, "pc", 380.0, 0.01, 2000, 2000, (166,),
                   "statistics R", snr=0.075, denoise=True, init="gaussian", ncsnpp_config="church",
                   checkpoint="ncsnpp_church", filters_file="lsun-church-256.npz", upstream=SCORE_SDE),
        Experiment("ffhq_ncsnpp", "Fig. 1, 7", "ncsnpp", "FFHQ", 1024, "pc", 1348.0, 0.01, 2000, 2000, (66,),
                   "statistics R + space A", snr=0.15, denoise=True, init="gaussian", ncsnpp_config="ffhq_1024",
                   checkpoint="ncsnpp_ffhq_1024", filters_file="ffhq-1024.npz", upstream=SCORE_SDE,
                   paper_results={"seconds_batch8_rtx3090": {"vanilla": 2030, "pds": 71}}),
        Experiment("cifar10_ncsnpp", "Table 1", "ncsnpp", "CIFAR-10", 32, "pc", 50.0, 0.01, 1000, 1000, (100, 200),
                   "statistics R", snr=0.16, denoise=True, init="gaussian", ncsnpp_config="cifar10",
                   checkpoint="ncsnpp_cifar10", filters_file="cifar10-32.npz", upstream=SCORE_SDE,
                   paper_results={"fid": {"vanilla": {100: 29.39, 200: 4.35}, "pds": {100: 3.26, 200: 2.61}}},
                   notes="T counts PC iterations: T=100 is 200 network evaluations."),
    )
}


# which paper experiment a model trained here stands in for (its sampler settings come from there)
STAND_INS = {"ncsn": "mnist_ncsn", "ncsnv2": "church_ncsnv2", "ncsnpp": "cifar10_ncsnpp"}


def experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
