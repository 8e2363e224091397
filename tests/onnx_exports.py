"""Exports the zoo's CNNs and a small transformer with PyTorch's two ONNX exporters.

Runs in the torch environment (`make .venv-torch/.installed`), not the main one:

    .venv-torch/bin/python tests/onnx_exports.py OUT_DIR

and writes OUT_DIR/*.onnx plus OUT_DIR/manifest.json: per file the exporter and its
options, and the torch module's own figures, counted here in torch: parameters
(``module.parameters()``; and after folding each batch norm into the conv before it,
as the TorchScript exporter does), forward MACs from forward hooks on every Conv2d,
Linear and attention product, and the weight layers in call order. The tests
(tests/test_onnx_torch_exports.py) import each file with our importer and compare.

The torch modules are written to match models/zoo.py layer for layer (torchvision
cannot be installed beside this torch build); their names follow the zoo's.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings

import torch
from torch import nn
import torch.nn.functional as F

from onnx_export_matrix import EXPORTS, INPUT_SHAPES


# ---------------------------------------------------------------- the modules


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, groups=1, act="relu"):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act == "relu":
            layers.append(nn.ReLU())
        elif act == "relu6":
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = ConvBN(cin, width, 3, stride)
        self.conv2 = ConvBN(width, width, 3, act=None)
        self.downsample = ConvBN(cin, width, 1, stride, act=None) \
            if stride != 1 or cin != width else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class ResNet18(nn.Module):
    """zoo.resnet(18, 224, 1000): 7x7 stem, max pool, four stages of basic blocks."""

    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = ConvBN(3, 64, 7, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for stage in range(4):
            width = 64 * 2 ** stage
            for block in range(2):
                blocks.append(BasicBlock(cin, width, 2 if block == 0 and stage else 1))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(self.maxpool(self.conv1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
    """zoo.mobilenet_v1(224, 1000)."""

    def __init__(self, classes=1000):
        super().__init__()
        layers, cin = [ConvBN(3, 32, 3, 2)], 32
        for cout, stride in MOBILENET_V1_BLOCKS:
            layers += [ConvBN(cin, cin, 3, stride, groups=cin), ConvBN(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [ConvBN(cin, hidden, 1, act="relu6")] if expand != 1 else []
        layers += [ConvBN(hidden, hidden, 3, stride, groups=hidden, act="relu6"),
                   ConvBN(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """zoo.mobilenet_v2(224, 1000)."""

    def __init__(self, classes=1000):
        super().__init__()
        layers, cin = [ConvBN(3, 32, 3, 2, act="relu6")], 32
        for expand, cout, repeats, first_stride in MOBILENET_V2_SETTINGS:
            for repeat in range(repeats):
                layers.append(InvertedResidual(cin, cout, first_stride if repeat == 0 else 1,
                                               expand))
                cin = cout
        layers.append(ConvBN(cin, 1280, 1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1280, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class MatMul(nn.Module):
    """An attention product as a module, so a forward hook counts its MACs."""

    def forward(self, a, b):
        return torch.matmul(a, b)


class Block(nn.Module):
    """zoo._attention_block, pre-norm: q/k/v projections, heads, softmax, MLP with GELU."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.scores, self.context = MatMul(), MatMul()
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def forward(self, x):
        n, tokens, dim = x.shape
        h = self.ln1(x)
        q, k, v = (p(h).reshape(n, tokens, self.heads, dim // self.heads).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        attention = torch.softmax(self.scores(q, k.transpose(-2, -1)), dim=-1)
        context = self.context(attention, v).transpose(1, 2).reshape(n, tokens, dim)
        x = x + self.proj(context)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class SmallViT(nn.Module):
    """zoo.vit(32, 10, 1, dim=64, depth=2, heads=4, mlp=128): patch 4, mean-pooled tokens."""

    def __init__(self, dim=64, depth=2, heads=4, mlp=128, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        n, dim = x.shape[:2]
        x = self.norm(self.blocks(x.reshape(n, dim, -1).transpose(1, 2)))
        x = x.transpose(1, 2).reshape(n, dim, -1, 1)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class KitchenSink(nn.Module):
    """The ops exporters write for mobile CNNs, in one small net: explicit Pad, hardswish,
    squeeze-excite (sigmoid gate), SiLU, Split + Concat, hardsigmoid, Gemm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 0, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.se_reduce = nn.Conv2d(16, 8, 1)
        self.se_expand = nn.Conv2d(8, 16, 1)
        self.branch_a = nn.Conv2d(8, 8, 1)
        self.branch_b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.hardswish(self.stem_bn(self.stem(F.pad(x, (1, 1, 1, 1)))))
        x = F.silu(self.dw(x))
        gate = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(F.adaptive_avg_pool2d(x, 1)))))
        x = x * gate
        a, b = torch.split(x, 8, dim=1)
        x = torch.cat([self.branch_a(a), self.branch_b(b)], dim=1)
        x = F.hardsigmoid(x)
        return torch.softmax(self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=-1)


MODELS = {"resnet18": ResNet18, "mobilenet_v1": MobileNetV1, "mobilenet_v2": MobileNetV2,
          "vit_small": SmallViT, "kitchen_sink": KitchenSink,
          "mobilenet_v1_64": MobileNetV1, "resnet18_32": ResNet18}

# ---------------------------------------------------------------- counting in torch


def count(module: nn.Module, shape) -> dict:
    """Returns the module's params, hooked forward MACs and weight layers in call order."""
    layers, macs = [], [0]

    def conv_hook(mod, inputs, output):
        per_output = mod.in_channels // mod.groups * math.prod(mod.kernel_size)
        macs[0] += output.numel() * per_output
        layers.append(["conv2d", list(mod.weight.shape)])

    def linear_hook(mod, inputs, output):
        macs[0] += output.numel() * mod.in_features
        layers.append(["dense", list(mod.weight.shape)])

    def matmul_hook(mod, inputs, output):
        macs[0] += output.numel() * inputs[0].shape[-1]
        layers.append(["batch_matmul", []])

    handles = []
    for sub in module.modules():
        hook = {nn.Conv2d: conv_hook, nn.Linear: linear_hook, MatMul: matmul_hook}.get(type(sub))
        if hook:
            handles.append(sub.register_forward_hook(hook))
    with torch.no_grad():
        module(torch.zeros(shape))
    for handle in handles:
        handle.remove()
    params = sum(p.numel() for p in module.parameters())
    # what the TorchScript exporter writes in eval mode: each BN folded into the conv
    # before it (the conv gains a bias, the BN's scale and shift go)
    folded = params
    modules = list(module.modules())
    for before, after in zip(modules, modules[1:]):
        if isinstance(before, nn.Conv2d) and isinstance(after, nn.BatchNorm2d):
            folded -= 2 * after.num_features
            folded += 0 if before.bias is not None else after.num_features
    norms = sum(isinstance(sub, nn.BatchNorm2d) for sub in module.modules())
    return {"params": params, "params_bn_folded": folded, "batch_norms": norms,
            "macs": macs[0], "layers": layers}


def export(module, shape, path, exporter, options) -> None:
    example = (torch.randn(shape),)
    options = dict(options)
    if exporter == "dynamo":
        external = options.pop("external_data", False)
        program = torch.onnx.export(module, example, dynamo=True, optimize=True,
                                    external_data=external, **options)
        program.save(path, external_data=external)
    else:
        torch.onnx.export(module, example, path, dynamo=False, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}},
                          **options)


def main(out_dir: str) -> int:
    torch.manual_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    manifest = {}
    only = set(sys.argv[2:])
    for stem, model_name, exporter, options in EXPORTS:
        if only and stem not in only:
            continue
        cls, shape = MODELS[model_name], INPUT_SHAPES[model_name]
        module = cls().eval()
        # non-trivial batch-norm statistics, so a fold that ignores them shows in numerics
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                with torch.no_grad():
                    sub.running_mean.uniform_(-0.1, 0.1)
                    sub.running_var.uniform_(0.5, 1.5)
                    sub.weight.uniform_(0.5, 1.5)
                    sub.bias.uniform_(-0.1, 0.1)
        path = os.path.join(out_dir, f"{stem}.onnx")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export(module, shape, path, exporter, options)
        manifest[stem] = {"file": f"{stem}.onnx", "model": model_name, "exporter": exporter,
                          "options": options, "input_shape": list(shape),
                          "torch": torch.__version__, **count(module, shape)}
        print(f"exported {stem} in {time.perf_counter() - started:.1f} s", flush=True)
    with open(os.path.join(out_dir, "manifest.json.tmp"), "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(os.path.join(out_dir, "manifest.json.tmp"), os.path.join(out_dir, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
