from __future__ import annotations

import pytest

from pds.configs import EXPERIMENTS, experiment
from pds.models import OFFICIAL_CONFIGS


def test_annealed_langevin_vanilla_T_is_levels_times_steps():
    for e in EXPERIMENTS.values():
        if e.sampler == "annealed_langevin":
            assert e.vanilla_T == e.levels * e.n_steps_each, e.name


def test_ncsnpp_experiments_match_the_official_model_configs():
    for e in EXPERIMENTS.values():
        if e.model == "ncsnpp":
            cfg = OFFICIAL_CONFIGS[e.ncsnpp_config]
            assert (cfg.sigma_max, cfg.sigma_min, cfg.num_scales, cfg.image_size) == (
                e.sigma_max, e.sigma_min, e.levels, e.size), e.name


def test_lookup_and_table():
    assert experiment("mnist_ncsn").pds_T == (20,)
    with pytest.raises(KeyError, match="known"):
        experiment("imagenet")
