"""Each notebook's own laboratory, on :mod:`pds.lab`'s API (a module serves one notebook, or a few that share a result):

* :mod:`~pds.lessons.playground` — notebook 00's sliders for the filter, T and the sampler on an exact score;
* :mod:`~pds.lessons.paper_figures` — notebooks 05, 06 and 11: Table 1 and Fig. 6's grid on a model;
* :mod:`~pds.lessons.exact_results` — the exact results of notebooks 03, 10, 12 and 14, kept;
* :mod:`~pds.lessons.shapes` — notebook 07's full profile at the paper's shapes; :mod:`~pds.lessons.timing` —
  notebook 08's Table 2 timings;
* :mod:`~pds.lessons.exact_claims` — notebook 11: the paper's claims on exact scores of real image sets;
* :mod:`~pds.lessons.optimised` — notebooks 12 and 13: the optimised filter carried over to real scores;
* :mod:`~pds.lessons.network_like` — notebook 13: how network-like a closed-form score is;
* :mod:`~pds.lessons.mechanism` — notebook 14: why PDS works.
"""
