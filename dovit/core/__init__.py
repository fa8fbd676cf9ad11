"""The DoViT core: the model and its token pass, its config and checkpoints, FLOPs, the trace, and the
Predictor.

Everything else in ``dovit`` (training, evaluation, analysis, policies, conversion, export, the CLIs) is built
on these modules; read them first: ``config`` -> ``model`` (with ``token_pass``, ``decoders``, ``stems``) ->
``flops`` -> ``trace`` -> ``predictor`` (with ``preprocess``), and ``checkpoint`` for saving and loading.
"""
