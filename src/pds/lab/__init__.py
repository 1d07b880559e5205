"""The laboratory around the method: everything the notebooks use to run, keep and report experiments.

* :mod:`~pds.lab.data` — the offline image sets (Fashion-MNIST, scikit-image photographs, LFW faces);
* :mod:`~pds.lab.metrics` — the classifier-feature Fréchet distance, image statistics, FID statistics;
* :mod:`~pds.lab.experiments` — sample-quality runs on the small models (a :class:`~pds.lab.experiments.Method`,
  T, n, a seed), verdicts with their spread;
* :mod:`~pds.lab.image_sets` — exact-score experiments on small real image sets;
* :mod:`~pds.lab.cache` — every finished run kept and found again on any CPU; :mod:`~pds.lab.recompute` — stored
  runs rebuilt from their records and drawn again (``python -m pds.lab.recompute verify``);
* :mod:`~pds.lab.generate` — ``pds sample``: sharded, resumable sampling from a checkpoint;
* :mod:`~pds.lab.notebooks`, :mod:`~pds.lab.findings`, :mod:`~pds.lab.book` — running the notebooks in the smoke /
  default / full profiles, the findings they state, the HTML book;
* :mod:`~pds.lab.timing`, :mod:`~pds.lab.shapes` — Table 2's timings and the full profile at the paper's shapes.
* :mod:`~pds.lab.playground` — notebook 00's sliders for the filter, T and the sampler on an exact score.
"""
