"""The regression gate: bounds on two runs' figures (bounds.py), with noise tests on their
histograms, and whether the two runs can be compared at all (comparable.py)."""
