"""Benchmarks for vgi_rpc (``make bench``; never part of ``make test``).

Every benchmark group measures a *baseline* and one or more *subjects* in the
same run, interleaved round by round, and reports ``subject / baseline`` ratios
(median of the per-round ratios, with the interquartile spread).  Absolute
times depend on the machine; ratios are what we compare and gate on.  See
``docs/benchmarks.md``.
"""
