"""The model zoo, built in code (no downloads), at batch 1 by default.

Every CNN takes a data set (which implies input size and classes) or an input
size. Small inputs (< 100 px: CIFAR, Tiny ImageNet) use the CIFAR variants the
training literature uses: a 3x3 stride-1 stem without the max pool for ResNets
and MobileNets, and a single classifier layer for VGG. Transformers take a
sequence length instead.

Counting conventions: params are weights + biases + norm scale/shift (and
embedding tables); MACs are the forward multiply-accumulates of convolutions,
dense layers and attention's batched products (pooling, norm, elementwise ops
and embedding lookups count none).

Transformers: BERT-base and GPT-2 small take token ids and count their token,
position (and BERT's segment) embeddings; they leave out BERT's pooler (0.59 M
params, one 768x768 product on the [CLS] token) and GPT-2's LM head (tied to the
token embedding, so no params of its own, but 768 x 50257 MACs per token). So
BERT-base is 108.9 M params (110 M in Devlin et al., 109.5 M with the pooler) and
GPT-2 small 124.4 M, and their MACs are exactly the closed form
    layers * (4*seq*d*d + 2*seq*d*ffn + 2*seq*seq*d).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.errors import UserError, suggest
from models.ir import (BatchMatmul, Conv2d, Dense, Elementwise, Embedding, GraphBuilder, Model,
                       Norm, Pool2d, Reshape, Transpose)

DATASETS: dict[str, tuple[int, int]] = {     # name -> (input size, classes)
    "cifar10": (32, 10), "cifar100": (32, 100), "tinyimagenet": (64, 200), "imagenet": (224, 1000)}


@dataclass(frozen=True)
class Published:
    """A model's published size at its reference input (batch 1), for the zoo tests."""
    params: float
    macs: float | None          # None: no single published figure (see the closed form)
    input: str                  # the input the figures are for
    source: str


# torchvision model cards (params, GFLOPS there are multiply-accumulates), the papers.
PUBLISHED: dict[str, Published] = {
    "resnet18": Published(11.69e6, 1.814e9, "224x224", "torchvision resnet18"),
    "resnet50": Published(25.56e6, 4.09e9, "224x224", "torchvision resnet50 (v1.5)"),
    "vgg16": Published(138.36e6, 15.47e9, "224x224", "torchvision vgg16"),
    "vgg19": Published(143.67e6, 19.63e9, "224x224", "torchvision vgg19"),
    "mobilenet_v1": Published(4.23e6, 0.569e9, "224x224", "Howard et al. 2017, Table 2"),
    "mobilenet_v2": Published(3.50e6, 0.300e9, "224x224", "Sandler et al. 2018 / torchvision"),
    "bert_base": Published(110e6, None, "seq 128", "Devlin et al. 2019 (110 M incl. pooler)"),
    "gpt2_small": Published(124.44e6, None, "seq 1024", "Hugging Face gpt2 (tied LM head)"),
}


@dataclass(frozen=True)
class ZooEntry:
    builder: Callable[..., Model]
    description: str
    default_dataset: str | None     # None: a transformer, sized by sequence length

    @property
    def datasets(self) -> tuple[str, ...]:
        """Returns the data sets the model builds for (transformers take none)."""
        return () if self.default_dataset is None else tuple(DATASETS)


# ---------------------------------------------------------------- building blocks


class _Net:
    """A GraphBuilder with conv-bn-relu helpers and automatic, readable op names."""

    def __init__(self, name: str, input_shape: tuple[int, ...], dtype: str = "float32"):
        self.builder = GraphBuilder(name)
        self.x = self.builder.input("input", input_shape, dtype)

    def conv_bn(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1,
                groups: int = 1, act: str | None = "relu", x: str | None = None) -> str:
        x = self.builder.add(Conv2d(name, cin, cout, kernel, stride, kernel // 2, groups),
                             x or self.x)
        x = self.builder.add(Norm(f"{name}.bn", "batch", cout), x)
        if act:
            x = self.builder.add(Elementwise(f"{name}.{act}", act), x)
        self.x = x
        return x

    def add(self, op, *inputs: str) -> str:
        self.x = self.builder.add(op, *(inputs or (self.x,)))
        return self.x

    def classifier(self, features: int, classes: int, pool: str = "avg") -> Model:
        self.add(Pool2d("pool", pool, global_pool=True))
        self.add(Reshape("flatten", (-1,)))
        self.add(Dense("fc", features, classes))
        return self.builder.build()


def _image_size(dataset: str | None, input_size: int | None, default: str) -> tuple[int, int]:
    """Returns (input size, classes) from a data set name or an explicit size."""
    if dataset is not None:
        key = dataset.lower().replace("-", "").replace("_", "")
        if key not in DATASETS:
            raise UserError(f"unknown data set '{dataset}'", field="--dataset",
                            fix=suggest(dataset, DATASETS))
        size, classes = DATASETS[key]
        return (input_size or size), classes
    size, classes = DATASETS[default]
    if input_size is not None:
        if input_size < 8:
            raise UserError(f"input size {input_size} is too small", field="--input-size",
                            fix="use at least 32 pixels")
        return input_size, classes
    return size, classes


# ---------------------------------------------------------------- CNNs


def resnet(depth: int, size: int, classes: int, batch: int) -> Model:
    """ResNet-18/34 (basic blocks) and -50/101 (bottlenecks, stride on the 3x3: v1.5)."""
    layers = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    net = _Net(f"resnet{depth}", (batch, 3, size, size))
    if size >= 100:
        net.conv_bn("conv1", 3, 64, 7, 2)
        net.add(Pool2d("maxpool", "max", 3, 2, 1))
    else:
        net.conv_bn("conv1", 3, 64, 3, 1)
    cin = 64
    for stage, blocks in enumerate(layers, start=1):
        width = 64 * 2 ** (stage - 1)
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 1 else 1
            name = f"layer{stage}.{block}"
            identity = net.x
            if bottleneck:
                net.conv_bn(f"{name}.conv1", cin, width, 1)
                net.conv_bn(f"{name}.conv2", width, width, 3, stride)
                out = net.conv_bn(f"{name}.conv3", width, width * expansion, 1, act=None)
            else:
                net.conv_bn(f"{name}.conv1", cin, width, 3, stride)
                out = net.conv_bn(f"{name}.conv2", width, width, 3, act=None)
            if stride != 1 or cin != width * expansion:
                identity = net.conv_bn(f"{name}.downsample", cin, width * expansion, 1, stride,
                                       act=None, x=identity)
            net.add(Elementwise(f"{name}.add", "add"), out, identity)
            net.add(Elementwise(f"{name}.relu", "relu"))
            cin = width * expansion
    return net.classifier(cin, classes)


def resnet9(size: int, classes: int, batch: int) -> Model:
    """The DAWNBench CIFAR ResNet-9 (prep, three stages, two residual blocks)."""
    net = _Net("resnet9", (batch, 3, size, size))
    net.conv_bn("prep", 3, 64, 3)
    for stage, (cin, cout, residual) in enumerate(((64, 128, True), (128, 256, False),
                                                   (256, 512, True)), start=1):
        net.conv_bn(f"layer{stage}.conv", cin, cout, 3)
        net.add(Pool2d(f"layer{stage}.pool", "max", 2, 2))
        if residual:
            identity = net.x
            net.conv_bn(f"layer{stage}.res1", cout, cout, 3)
            out = net.conv_bn(f"layer{stage}.res2", cout, cout, 3)
            net.add(Elementwise(f"layer{stage}.add", "add"), out, identity)
    return net.classifier(512, classes, pool="max")


VGG_CONFIGS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(depth: int, size: int, classes: int, batch: int) -> Model:
    """VGG-16/19 (no batch norm); ImageNet keeps the 4096-wide classifier, small inputs
    use the single linear classifier of the CIFAR variants."""
    net = _Net(f"vgg{depth}", (batch, 3, size, size))
    cin = 3
    for stage, convs in enumerate(VGG_CONFIGS[depth], start=1):
        width = min(64 * 2 ** (stage - 1), 512)
        for index in range(convs):
            name = f"features.{stage}.{index}"
            net.add(Conv2d(name, cin, width, 3, 1, 1, bias=True))
            net.add(Elementwise(f"{name}.relu", "relu"))
            cin = width
        net.add(Pool2d(f"features.{stage}.pool", "max", 2, 2))
    spatial = size // 32
    net.add(Reshape("flatten", (-1,)))
    features = 512 * spatial * spatial
    if size >= 100:
        net.add(Dense("fc1", features, 4096))
        net.add(Elementwise("fc1.relu", "relu"))
        net.add(Dense("fc2", 4096, 4096))
        net.add(Elementwise("fc2.relu", "relu"))
        net.add(Dense("fc3", 4096, classes))
    else:
        net.add(Dense("fc", features, classes))
    return net.builder.build()


MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1(size: int, classes: int, batch: int) -> Model:
    """MobileNet v1 (width 1.0): depthwise-separable blocks, 0.57 GMACs at 224."""
    net = _Net("mobilenet_v1", (batch, 3, size, size))
    net.conv_bn("conv0", 3, 32, 3, 2 if size >= 100 else 1)
    cin = 32
    for index, (cout, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        net.conv_bn(f"block{index}.dw", cin, cin, 3, stride, groups=cin)
        net.conv_bn(f"block{index}.pw", cin, cout, 1)
        cin = cout
    return net.classifier(cin, classes)


MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(size: int, classes: int, batch: int) -> Model:
    """MobileNet v2 (width 1.0): inverted residuals with linear bottlenecks, relu6."""
    net = _Net("mobilenet_v2", (batch, 3, size, size))
    net.conv_bn("conv0", 3, 32, 3, 2 if size >= 100 else 1, act="relu6")
    cin = 32
    block = 0
    for expand, cout, repeats, first_stride in MOBILENET_V2_SETTINGS:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            name = f"block{block}"
            identity = net.x
            hidden = cin * expand
            if expand != 1:
                net.conv_bn(f"{name}.expand", cin, hidden, 1, act="relu6")
            net.conv_bn(f"{name}.dw", hidden, hidden, 3, stride, groups=hidden, act="relu6")
            out = net.conv_bn(f"{name}.project", hidden, cout, 1, act=None)
            if stride == 1 and cin == cout:
                net.add(Elementwise(f"{name}.add", "add"), out, identity)
            cin = cout
            block += 1
    net.conv_bn("conv_last", cin, 1280, 1, act="relu6")
    return net.classifier(1280, classes)


# ---------------------------------------------------------------- transformers


def _attention_block(net: _Net, name: str, tokens: int, dim: int, heads: int, mlp: int,
                     act: str, pre_norm: bool) -> None:
    """One transformer block: multi-head self-attention and an MLP, each with a residual."""
    head_dim = dim // heads
    residual = net.x
    x = net.add(Norm(f"{name}.ln1", "layer", dim)) if pre_norm else net.x
    split = []
    for projection in ("q", "k", "v"):
        net.add(Dense(f"{name}.attn.{projection}", dim, dim), x)
        net.add(Reshape(f"{name}.attn.{projection}.heads", (tokens, heads, head_dim)))
        split.append(net.add(Transpose(f"{name}.attn.{projection}.t", (0, 2, 1, 3))))
    q, k, v = split
    net.add(BatchMatmul(f"{name}.attn.scores", transpose_b=True), q, k)
    scores = net.add(Elementwise(f"{name}.attn.softmax", "softmax"))
    net.add(BatchMatmul(f"{name}.attn.context"), scores, v)
    net.add(Transpose(f"{name}.attn.context.t", (0, 2, 1, 3)))
    net.add(Reshape(f"{name}.attn.merge", (tokens, dim)))
    net.add(Dense(f"{name}.attn.proj", dim, dim))
    x = net.add(Elementwise(f"{name}.attn.add", "add"), net.x, residual)
    if not pre_norm:
        x = net.add(Norm(f"{name}.ln1", "layer", dim))
    residual = x
    if pre_norm:
        net.add(Norm(f"{name}.ln2", "layer", dim))
    net.add(Dense(f"{name}.mlp.fc1", dim, mlp))
    net.add(Elementwise(f"{name}.mlp.{act}", act))
    net.add(Dense(f"{name}.mlp.fc2", mlp, dim))
    net.add(Elementwise(f"{name}.mlp.add", "add"), net.x, residual)
    if not pre_norm:
        net.add(Norm(f"{name}.ln2", "layer", dim))


def transformer_stack(name: str, layers: int, dim: int, heads: int, mlp: int, seq: int,
                      batch: int, pre_norm: bool, vocab: int, positions: int,
                      token_types: int = 0) -> Model:
    """An encoder (BERT: post-norm, embedding layer norm) or decoder (GPT-2: pre-norm,
    final layer norm) on token ids. A causal mask changes no GEMM shape, so the
    decoder's products are the encoder's."""
    if dim % heads:
        raise UserError(f"dim {dim} is not a multiple of {heads} heads", field=name,
                        fix="choose heads dividing the width")
    if not 1 <= seq <= positions:
        raise UserError(f"sequence length {seq} is outside 1..{positions}", field="--input-size",
                        fix=f"{name} has {positions} learned positions; use at most that many")
    net = _Net(name, (batch, seq), dtype="int64")
    net.add(Embedding("embed", vocab, dim, positions, token_types))
    if not pre_norm:
        net.add(Norm("embed.ln", "layer", dim))
    for layer in range(layers):
        _attention_block(net, f"layer{layer}", seq, dim, heads, mlp, "gelu", pre_norm)
    if pre_norm:
        net.add(Norm("ln_f", "layer", dim))
    return net.builder.build()


def vit_patch(size: int) -> int:
    """Returns the patch side for an input side: 4 on CIFAR (32 px), 8 on Tiny ImageNet
    (64 px), 16 on ImageNet (ViT-B/16's): 64 tokens on the small sets, 196 on ImageNet."""
    return 4 if size <= 32 else 8 if size <= 64 else 16


def vit(size: int, classes: int, batch: int, dim: int = 512, depth: int = 6, heads: int = 8,
        mlp: int = 512) -> Model:
    """The small ViT trained from scratch on CIFAR (vit-pytorch as configured in
    kentaroy47/vision-transformers-cifar10): patch 4, 6 pre-norm blocks of width 512,
    8 heads, MLP 512, GELU, biases on every projection. Tokens are mean-pooled
    instead of read from a class token (the IR has no concat; one token of 65 is
    1.5% of the MACs), and the learned position table (tokens x 512 params) is left
    out. Larger inputs use larger patches (``vit_patch``)."""
    patch = vit_patch(size)
    if size % patch:
        raise UserError(f"input {size} is not a multiple of the patch {patch}", field="vit",
                        fix=f"use an input size divisible by {patch}")
    tokens = (size // patch) ** 2
    net = _Net("vit", (batch, 3, size, size))
    net.add(Conv2d("patch_embed", 3, dim, patch, patch, 0, bias=True))   # = a linear layer per patch
    net.add(Reshape("patch_embed.flatten", (dim, tokens)))
    net.add(Transpose("patch_embed.t", (0, 2, 1)))
    for layer in range(depth):
        _attention_block(net, f"block{layer}", tokens, dim, heads, mlp, "gelu", pre_norm=True)
    net.add(Norm("norm", "layer", dim))
    net.add(Transpose("tokens.t", (0, 2, 1)))
    net.add(Reshape("tokens.image", (dim, tokens, 1)))
    net.add(Pool2d("pool", "avg", global_pool=True))
    net.add(Reshape("flatten", (-1,)))
    net.add(Dense("head", dim, classes))
    return net.builder.build()


# ---------------------------------------------------------------- registry


def _cnn(builder: Callable[[int, int, int], Model]) -> Callable[..., Model]:
    def build_cnn(dataset=None, input_size=None, batch=1, *, default="imagenet"):
        size, classes = _image_size(dataset, input_size, default)
        return builder(size, classes, batch)
    return build_cnn


def _transformer(name: str, default_seq: int, pre_norm: bool, vocab: int, positions: int,
                 token_types: int) -> Callable[..., Model]:
    """Returns the builder of a 12-layer, 768-wide, 12-head, FFN-3072 stack (BERT-base / GPT-2
    small); ``input_size`` is the sequence length."""
    def build_stack(dataset=None, input_size=None, batch=1, *, default=None):
        if dataset is not None:
            raise UserError(f"{name} takes no data set", field="--dataset",
                            fix="leave it out; use --input-size for the sequence length")
        return transformer_stack(name, 12, 768, 12, 3072, input_size or default_seq, batch,
                                 pre_norm, vocab, positions, token_types)
    return build_stack


ZOO: dict[str, ZooEntry] = {
    "resnet18": ZooEntry(_cnn(lambda s, c, b: resnet(18, s, c, b)),
                         "ResNet-18 (He et al. 2016)", "imagenet"),
    "resnet50": ZooEntry(_cnn(lambda s, c, b: resnet(50, s, c, b)),
                         "ResNet-50 v1.5 (stride on the 3x3)", "imagenet"),
    "resnet9": ZooEntry(_cnn(resnet9), "ResNet-9, the DAWNBench CIFAR network", "cifar10"),
    "vgg16": ZooEntry(_cnn(lambda s, c, b: vgg(16, s, c, b)), "VGG-16 (no BN)", "imagenet"),
    "vgg19": ZooEntry(_cnn(lambda s, c, b: vgg(19, s, c, b)), "VGG-19 (no BN)", "imagenet"),
    "mobilenet_v1": ZooEntry(_cnn(mobilenet_v1), "MobileNet v1, width 1.0", "imagenet"),
    "mobilenet_v2": ZooEntry(_cnn(mobilenet_v2), "MobileNet v2, width 1.0", "imagenet"),
    "vit": ZooEntry(_cnn(vit), "small CIFAR ViT: patch 4 (8 at 64 px, 16 at 224), 6 blocks, "
                               "width 512, 8 heads, MLP 512", "cifar10"),
    "bert_base": ZooEntry(_transformer("bert_base", 128, False, 30522, 512, 2),
                          "BERT-base encoder, seq 128, with embeddings, no pooler", None),
    "gpt2_small": ZooEntry(_transformer("gpt2_small", 1024, True, 50257, 1024, 0),
                           "GPT-2 small decoder, seq 1024, with embeddings, no LM head", None),
}


def names() -> list[str]:
    """Returns the zoo's model names in a stable order."""
    return list(ZOO)


def describe(name: str) -> str:
    """Returns a one-line description of the zoo model ``name``."""
    return _entry(name).description


def datasets(name: str) -> tuple[str, ...]:
    """Returns the data sets ``name`` builds for (empty for transformers)."""
    return _entry(name).datasets


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise UserError(f"unknown model '{name}'", field="model", fix=suggest(name, ZOO))
    return ZOO[name]


def build(name: str, *, dataset: str | None = None, input_size: int | None = None,
          batch: int = 1) -> Model:
    """Returns the zoo model ``name`` for a data set (or input size / sequence length)."""
    entry = _entry(name)
    if batch < 1:
        raise UserError(f"batch {batch} must be >= 1", field="--batch", fix="use a positive batch")
    if entry.default_dataset is None:
        return entry.builder(dataset, input_size, batch)
    return entry.builder(dataset, input_size, batch, default=entry.default_dataset)
