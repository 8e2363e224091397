"""The zoo: published parameter and MAC counts, and every model builds and lowers."""
from __future__ import annotations

import pytest

from models import zoo
from models.errors import UserError
from models.ir import Embedding, model_from_dict, model_to_dict
from models.lowering import lower

WITH_PUBLISHED_MACS = sorted(name for name, ref in zoo.PUBLISHED.items() if ref.macs is not None)


@pytest.mark.parametrize("name", WITH_PUBLISHED_MACS)
def test_published_params_and_macs_at_224(name):
    reference = zoo.PUBLISHED[name]
    assert reference.input == "224x224"
    model = zoo.build(name)
    assert model.inputs()[0].shape == (1, 3, 224, 224)
    assert model.params() == pytest.approx(reference.params, rel=0.02)
    assert model.macs() == pytest.approx(reference.macs, rel=0.02)


@pytest.mark.parametrize("name, seq, vocab, positions, token_types, final_norm", [
    ("bert_base", 128, 30522, 512, 2, 0), ("gpt2_small", 1024, 50257, 1024, 0, 1)])
def test_transformers_match_the_closed_form(name, seq, vocab, positions, token_types, final_norm):
    dim, ffn, layers = 768, 3072, 12
    model = zoo.build(name)
    assert model.inputs()[0].shape == (1, seq) and model.inputs()[0].dtype == "int64"
    per_layer_macs = 4 * seq * dim * dim + 2 * seq * dim * ffn + 2 * seq * seq * dim
    assert model.macs() == layers * per_layer_macs
    per_layer_params = 4 * (dim * dim + dim) + (dim * ffn + ffn) + (ffn * dim + dim) + 2 * 2 * dim
    embeddings = (vocab + positions + token_types) * dim
    # BERT: layer norm after the embeddings; GPT-2: a final layer norm
    params = embeddings + 2 * dim + layers * per_layer_params
    assert model.params() == params
    assert model.params() == pytest.approx(zoo.PUBLISHED[name].params, rel=0.02)
    assert final_norm == int("ln_f" in model.graph)


def test_transformer_sequence_length_is_the_input_size():
    short = zoo.build("bert_base", input_size=64)
    assert short.output_spec(short.outputs()[0]).shape == (1, 64, 768)
    with pytest.raises(UserError, match="512"):
        zoo.build("bert_base", input_size=513)
    with pytest.raises(UserError, match="--dataset"):
        zoo.build("gpt2_small", dataset="cifar10")


def test_embeddings_lower_to_no_gemm():
    model = zoo.build("bert_base", input_size=16)
    layers = {w.layer for w in lower(model, "train")}
    assert not any(isinstance(model.op(name), Embedding) for name in layers)
    assert "layer0.attn.q" in layers


@pytest.mark.parametrize("name", zoo.names())
def test_every_model_round_trips_and_lowers(name):
    model = zoo.build(name, batch=2, input_size=64 if not zoo.datasets(name) else None)
    assert model.batch == 2
    document = model_to_dict(model)
    assert model_to_dict(model_from_dict(document)) == document
    assert sum(w.macs for w in lower(model, "infer")) == model.macs()
    assert sum(w.macs for w in lower(model, "infer", batch=4)) == 2 * model.macs()
    train = lower(model, "train")
    assert {w.phase for w in train} == {"FF", "BP", "WU"}


CNN_DATASETS = [(name, dataset) for name in zoo.names() for dataset in zoo.datasets(name)]


@pytest.mark.parametrize("name, dataset", CNN_DATASETS)
def test_every_model_builds_for_its_datasets(name, dataset):
    size, classes = zoo.DATASETS[dataset]
    model = zoo.build(name, dataset=dataset)
    assert model.inputs()[0].shape == (1, 3, size, size)
    assert model.output_spec(model.outputs()[0]).shape == (1, classes)
    assert sum(w.macs for w in lower(model, "infer")) == model.macs()


def test_small_inputs_use_the_cifar_stems():
    # CIFAR ResNets keep the 32x32 resolution in the first stage (3x3 stem, no max pool)
    model = zoo.build("resnet18", dataset="cifar10")
    assert model.output_spec("layer1.0.conv1").shape == (1, 64, 32, 32)
    assert model.macs() == pytest.approx(0.556e9, rel=0.01)


def test_vit_patch_grows_with_the_input():
    for dataset, tokens in (("cifar10", 64), ("tinyimagenet", 64), ("imagenet", 196)):
        model = zoo.build("vit", dataset=dataset)
        assert model.output_spec("block0.attn.scores").shape == (1, 8, tokens, tokens)


def test_input_size_overrides_the_dataset_size():
    model = zoo.build("resnet18", dataset="cifar100", input_size=40)
    assert model.inputs()[0].shape == (1, 3, 40, 40)
    assert model.output_spec(model.outputs()[0]).shape == (1, 100)


def test_describe_and_published_cover_known_names():
    assert set(zoo.PUBLISHED) <= set(zoo.names())
    for name in zoo.names():
        assert zoo.describe(name) and "\n" not in zoo.describe(name)


@pytest.mark.parametrize("call, expected", [
    (lambda: zoo.build("resnet81"), "did you mean 'resnet18'"),
    (lambda: zoo.build("resnet18", dataset="cifar11"), "cifar10"),
    (lambda: zoo.describe("vgg61"), "vgg16"),
    (lambda: zoo.build("resnet18", batch=0), "--batch"),
    (lambda: zoo.build("vit", input_size=30), "divisible"),
])
def test_bad_arguments_are_user_errors(call, expected):
    with pytest.raises(UserError, match=expected):
        call()
