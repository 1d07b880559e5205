"""Each notebook's own laboratory, on :mod:`pds.lab`'s API: one module per notebook, or per few that share a result.
Which notebooks each module serves: its docstring, and the README's ``pds.lessons`` table."""
