"""Baseline engines users already run (issue 15): whole models, timed the same way.

Each engine module has ``NAME``, ``problems() -> list[str]`` (why it cannot run here,
empty when it can), ``run(model_file, x, threads) -> outputs`` and
``time(model_file, x, threads, repeats) -> Timing``. ONNX files for the zoo come from
targets/engines/onnx_file.py (a minimal IR -> ONNX writer for the zoo CNNs' ops).
"""
