"""The restricted reader of torch checkpoints behind :mod:`core.safe_pickle` (which is its public face).

Layers, each importing only those above it: ``limits`` (bounds, budget, bounded reads, refusals) ->
``objects`` (what the pickle machine hands out, argument checks, hash-flood guard, storage ids) ->
``stand_ins`` -> ``torch_globals`` / ``numpy_globals`` -> ``allow_list`` -> ``machine`` (the pickle machine)
-> ``zip_format`` / ``legacy_format`` -> ``reader`` (:func:`~core.checkpoint_io.reader.load_torch_file_safely`).
Callers import :mod:`core.safe_pickle`, not these modules.
"""
