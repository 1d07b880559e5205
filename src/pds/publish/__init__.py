"""Running the notebooks and publishing what they find. Of the laboratory only :mod:`pds.lab.verdicts` is imported,
so building the book loads neither the networks nor the experiments:

* :mod:`~pds.publish.notebooks` — the notebooks in the smoke / default / full profiles (``make notebooks``);
* :mod:`~pds.publish.findings` — the findings they state (``FINDINGS.md``); :mod:`~pds.publish.compare` — a run's
  findings against the committed ones;
* :mod:`~pds.publish.rendered` — the rendered pages; :mod:`~pds.publish.book` — the HTML book.
"""
