"""homo-convert: a horizontally trained component turned into a model of an ordinary framework.

One module per framework (``sklearn_lr``, ``pytorch_nn``, ``lightgbm_sbt``), each imported lazily
with its framework; :mod:`.convert` runs a conversion on one party's version directory.
"""
