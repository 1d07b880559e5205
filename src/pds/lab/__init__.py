"""The laboratory's API: what the ``pds`` command, the recomputation of stored runs and every notebook use.

* :mod:`~pds.lab.data` — the offline image sets (Fashion-MNIST, scikit-image photographs, LFW faces);
* :mod:`~pds.lab.metrics` — the classifier-feature Fréchet distance, image statistics, FID statistics;
* :mod:`~pds.lab.experiments` — sample-quality runs on the small models (a :class:`~pds.lab.experiments.Method`,
  T, n, a seed); :mod:`~pds.lab.verdicts` — verdicts with their spread;
* :mod:`~pds.lab.image_sets` — real image sets as exact targets;
* :mod:`~pds.lab.cache` — every finished run kept and found again on any CPU; :mod:`~pds.lab.recompute` — stored
  runs rebuilt from their records and drawn again (``python -m pds.lab.recompute verify``); :mod:`~pds.lab.optima`
  — the exact filter searches kept;
* :mod:`~pds.lab.generate` — ``pds sample``: sharded, resumable sampling from a checkpoint;
* :mod:`~pds.lab.official` — random-weight files in the official layouts (the full profile's stand-ins).

Each notebook's own laboratory is in :mod:`pds.lessons`; running the notebooks and publishing what they find in
:mod:`pds.publish`.
"""
