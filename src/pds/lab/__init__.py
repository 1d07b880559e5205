"""The laboratory's API: what the ``pds`` command, the recomputation of stored runs and every notebook use (its modules:
README.md, "pds.lab"). Each notebook's own laboratory is in :mod:`pds.lessons`; running and publishing them in
:mod:`pds.publish`."""
