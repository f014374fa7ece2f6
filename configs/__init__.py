"""ml_collections configs: `get_config(arg)` per stage; arg 'tiny' for tests.

An importable package (`from configs import mofa`) that launch scripts also
load by path: `--config=configs/mofa.py:tiny`.
"""
