"""How far diffusers' VE rules move the samples from the released ones (pds.samplers.pc_sampler), rule by rule.

The model is the exact score of 100 crops of scikit-image's photographs at 32² (colour, pixel values in [0, 1], so the
differences are in pixel units), wrapped as the pipeline calls a UNet; CIFAR-10's settings (σ 0.01 → 50, 1000
scales, snr 0.16), PDS with the statistics filter R of the same crops (α = 5). Each line runs
``ScoreSdeVePipeline`` with :class:`pds.integrations.diffusers.PDSScoreSdeVeScheduler` and ``pc_sampler`` from the
same generator seed and prints the largest and the mean absolute difference of the final x̄ (before the pipeline's
clamp) and the fraction of pixels that clamp changes:

* "rules coincide": the pipeline's white prior given to pc_sampler, ``sampling_eps`` matched: float32 rounding;
* "sampling_eps": diffusers' 1e-5 at T < 1000 against the released 1e-5·1000/T;
* "prior": the pipeline's white σ_max·ξ against the released σ_max·M⁻¹ξ.

    .venv/bin/python benchmarks/diffusers_rules.py      # about a minute on a 2-core CPU
"""

import torch
from diffusers import ScoreSdeVePipeline

from pds.empirical import EmpiricalScore
from pds.filters import frequency_filter
from pds.integrations.diffusers import PDSScoreSdeVeScheduler, last_mean
from pds.lab.image_sets import image_set
from pds.precondition import Preconditioner
from pds.samplers import pc_sampler
from pds.schedules import ve_schedule

SIGMA_MIN, SIGMA_MAX, SCALES, SNR, BATCH, SEED = 0.01, 50.0, 1000, 0.16, 8, 0


class ScoreAsUNet(torch.nn.Module):
    """A score s(x, σ) called as the pipeline calls its UNet: ``unet(x, sigma_tensor).sample``."""

    def __init__(self, score, size: int):
        super().__init__()
        self.score, self.anchor = score, torch.nn.Parameter(torch.zeros(()))  # a parameter: the pipeline's device
        self.config = type("Config", (), {"sample_size": size})()

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, x, sigma):
        return type("Out", (), {"sample": self.score(x, float(sigma.reshape(-1)[0]))})()


def pipeline(unet, pre, steps, eps):
    sched = PDSScoreSdeVeScheduler(num_train_timesteps=SCALES, snr=SNR, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                                   sampling_eps=eps, preconditioner=pre)
    pipe = ScoreSdeVePipeline(unet, sched)
    pipe.set_progress_bar_config(disable=True)
    return last_mean(pipe, batch_size=BATCH, num_inference_steps=steps, output_type="np",
                     generator=torch.Generator().manual_seed(SEED))


def released(score, pre, steps, size, white_prior=True):
    gen = torch.Generator().manual_seed(SEED)
    start = torch.randn(BATCH, 3, size, size, generator=gen) * SIGMA_MAX if white_prior else (BATCH, 3, size, size)
    sched = ve_schedule(SIGMA_MIN, SIGMA_MAX, SCALES, iterations=steps)
    return pc_sampler(score, start, sched, snr=SNR, preconditioner=pre, generator=gen)[0]


def main():
    crops = image_set({"set": "photo-crops", "n": 100, "size": 32, "seed": 0}).images
    score_fn = EmpiricalScore(crops)
    unet = ScoreAsUNet(score_fn, 32)
    pre = Preconditioner(freq=frequency_filter(crops), alpha=5.0)
    print(f"{'rule':<16} {'T':>5} {'method':<8} {'max |Δ|':>9} {'mean |Δ|':>9} {'clamped':>8}")
    for steps in (SCALES, 100):
        matched = 1e-5 * SCALES / steps
        for name, p in (("vanilla", None), ("PDS (R)", pre)):
            runs = [("rules coincide", pipeline(unet, p, steps, matched), released(score_fn, p, steps, 32))]
            if steps != SCALES:
                runs.append(("sampling_eps", pipeline(unet, p, steps, 1e-5), runs[0][2]))
            if p is not None:
                runs.append(("prior", runs[0][1], released(score_fn, p, steps, 32, white_prior=False)))
            for rule, a, b in runs:
                d = (a - b).abs()
                clamped = float((a.clamp(0, 1) != a).float().mean())
                print(f"{rule:<16} {steps:>5} {name:<8} {float(d.max()):>9.2e} {float(d.mean()):>9.2e} "
                      f"{clamped:>8.3f}")


if __name__ == "__main__":
    main()
