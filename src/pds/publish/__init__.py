"""Running the notebooks and publishing what they find (its modules: README.md, "pds.publish"). Of the laboratory only
:mod:`pds.lab.verdicts` is imported, so building the book loads neither the networks nor the experiments."""
