"""Which files tests/onnx_exports.py writes: shared, torch-free, by the export script
(run in .venv-torch) and the tests that import its files (run in the main venv).

A bounded matrix: the issue's MobileNet-v1 case first, every zoo CNN and a small
transformer through both PyTorch exporters, and the TorchScript exporter's options
(opsets 13..20, constant folding on and off, keep_initializers_as_inputs both ways)
on the small net that holds every mobile-CNN op, where each export takes a second."""
from __future__ import annotations

INPUT_SHAPES = {"resnet18": (1, 3, 224, 224), "mobilenet_v1": (1, 3, 224, 224),
                "mobilenet_v2": (1, 3, 224, 224), "vit_small": (1, 3, 32, 32),
                "kitchen_sink": (1, 3, 32, 32),
                # small inputs for the codegen builds checked against ONNX Runtime
                "mobilenet_v1_64": (1, 3, 64, 64), "resnet18_32": (1, 3, 32, 32)}

# (file stem, model, exporter, options)
EXPORTS = [
    ("mobilenet_v1.ts17", "mobilenet_v1", "torchscript", {"opset_version": 17,
                                                          "do_constant_folding": True}),
    ("resnet18.ts17", "resnet18", "torchscript", {"opset_version": 17}),
    ("mobilenet_v2.ts17", "mobilenet_v2", "torchscript", {"opset_version": 17}),
    ("mobilenet_v1.dynamo18", "mobilenet_v1", "dynamo", {"opset_version": 18,
                                                         "external_data": True}),
    ("resnet18.dynamo18", "resnet18", "dynamo", {"opset_version": 18, "external_data": True}),
    ("mobilenet_v2.dynamo18", "mobilenet_v2", "dynamo", {"opset_version": 18,
                                                         "external_data": True}),
    # for hwsim codegen + run: batch norms left in the file (folded by models.weights)
    ("mobilenet_v1_64.ts17.nofold", "mobilenet_v1_64", "torchscript",
     {"opset_version": 17, "do_constant_folding": False}),
    ("resnet18_32.dynamo18", "resnet18_32", "dynamo", {"opset_version": 18,
                                                       "external_data": True}),
    ("vit_small.ts17", "vit_small", "torchscript", {"opset_version": 17}),
    ("vit_small.ts14", "vit_small", "torchscript", {"opset_version": 14}),
    ("vit_small.dynamo18", "vit_small", "dynamo", {"opset_version": 18}),
    ("kitchen_sink.dynamo20", "kitchen_sink", "dynamo", {"opset_version": 20}),
    *[(f"kitchen_sink.ts{opset}{'.nofold' if not fold else ''}{'.initin' if inputs else ''}",
       "kitchen_sink", "torchscript",
       {"opset_version": opset, "do_constant_folding": fold,
        "keep_initializers_as_inputs": inputs})
      for opset in (13, 14, 16, 17, 18, 20) for fold in (True, False) for inputs in (False, True)
      if (fold and not inputs) or opset in (13, 20)],
]
STEMS = [stem for stem, *_ in EXPORTS]
CODEGEN_STEMS = ["mobilenet_v1_64.ts17.nofold", "resnet18_32.dynamo18"]
