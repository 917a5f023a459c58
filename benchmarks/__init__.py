"""Runnable comparisons of wscore against its peers; each prints ratios measured in one run."""
