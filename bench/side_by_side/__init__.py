"""The side-by-side benchmark: tidemq and Apache RocketMQ under one load, every figure a ratio (``bench/run.py``)."""
