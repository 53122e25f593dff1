"""One evaluation path for every command that reports a number.

- :mod:`.settings`: the benchmark settings and how a setting becomes an acquisition and a
  :class:`~medrecon.reconstruct.Problem` (``bench recon``, ``bench tune-samplers``,
  ``reproduce starter``);
- :mod:`.baselines`: the classical baselines as a registry and the choice of their tuned weights
  (``reconstruct``'s record, the benchmarks, every ``reproduce`` protocol);
- :mod:`.scoring`: one scoring function with the protocol named (``volume``, ``slice``,
  ``fastmri``; studies in native units under ``window``).
"""
