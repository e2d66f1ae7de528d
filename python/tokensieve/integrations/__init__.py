"""tokensieve in other engines, each behind an optional dependency imported only by its module.

* :mod:`tokensieve.integrations.batch`: picklable batch functions (n-gram features, fastText
  scores, DSIR weights, a causal LM's per-document statistics) that every engine below calls;
  no extra dependency (``tokensieve[scoring]`` for the LM).
* :mod:`tokensieve.integrations.ray`: Ray Data (``pip install tokensieve[ray]``): batch
  functions on actor pools, corpus files read into blocks, DSIR fitted and selected on a cluster
  with the single-machine selection.
* :mod:`tokensieve.integrations.datatrove`: datatrove pipeline steps (``tokensieve[datatrove]``).
* :mod:`tokensieve.integrations.hf`: Hugging Face ``datasets`` (``tokensieve[datasets]``).
* :mod:`tokensieve.integrations.machine`: one copy of a batch function's model for all the
  processes of a machine (``datasets`` with ``num_proc``, datatrove's local executor), in shared
  memory; no extra dependency.
"""
