"""The scripts behind every number in ``docs/benchmarks.md``; run each from the repository root.

``python -m benchmarks.<name> --help`` lists a script's options; ``--quick`` runs its smoke test (tiny sizes,
finite metrics, trained beats untrained). Shared helpers: ``_common`` (training with an explicit budget, embedding,
quiet runs, tables), ``_gaussian`` and ``_discrete`` (the synthetic families).
"""
