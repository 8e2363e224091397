# CPU PyTorch in its own environment for the real-export ONNX tests (issue 14):
# tests/onnx_exports.py runs there as a subprocess, exporting the zoo's CNNs and a
# small transformer with both PyTorch exporters; the main venv imports the files.
# torch==2.13.0 is pinned exactly: pip takes the CPU wheel on this disk, while any
# looser spec lets pip pull a multi-GB CUDA build. onnxscript is what the dynamo
# exporter (torch.onnx.export(..., dynamo=True)) needs.
TORCH_VENV := .venv-torch
TEST_DEPS += $(TORCH_VENV)/.installed

$(TORCH_VENV)/.installed: mk/torch.mk
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q 'torch==2.13.0' 'onnx==1.23.2' \
	  'onnxscript==0.7.2' 'onnx-ir==1.1.0' 'numpy>=2,<3'
	touch $(TORCH_VENV)/.installed

# CPU TensorFlow + tf2onnx in their own environment, for the same tests on what a
# TensorFlow team exports (tests/onnx_tf_exports.py converts Keras CNNs). Pinned:
# tensorflow-cpu is the CPU-only wheel (about 270 MB; the venv is about 1.6 GB).
# ai-edge-litert is LiteRT's own runtime (the interpreter + XNNPACK delegate users deploy;
# tf.lite.Interpreter is deprecated): the host baseline targets/engines/litert.py times it.
TF_VENV := .venv-tf
TEST_DEPS += $(TF_VENV)/.installed

$(TF_VENV)/.installed: mk/torch.mk
	test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install -q 'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0' \
	  'ai-edge-litert==2.3.0'
	touch $(TF_VENV)/.installed
