"""freshtoken benchmarks: ``python -m benchmarks.run`` (``make bench``) writes docs/benchmarks.md.

Every benchmark is a plain function taking a :class:`benchmarks.common.Context` and its sizes and
returning a dict of measurements; :mod:`benchmarks.run` runs them side by side and renders the
report (:mod:`benchmarks.report`). Nothing here asserts an absolute number: targets are ratios,
checked and reported as met or missed.
"""
