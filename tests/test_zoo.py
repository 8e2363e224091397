"""The zoo: published parameter and MAC counts, and every model builds and lowers."""
from __future__ import annotations

import pytest

from models import zoo
from models.errors import UserError
from models.ir import model_from_dict, model_to_dict
from models.lowering import lower

# (params, forward MACs) at 224x224, batch 1, from the papers / torchvision's model cards.
PUBLISHED = {"resnet18": (11.69e6, 1.814e9), "resnet50": (25.56e6, 4.09e9),
             "vgg16": (138.36e6, 15.47e9), "vgg19": (143.67e6, 19.63e9),
             "mobilenet_v1": (4.23e6, 0.569e9), "mobilenet_v2": (3.50e6, 0.300e9)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params_and_macs(name):
    params, macs = PUBLISHED[name]
    model = zoo.build(name)
    assert model.params() == pytest.approx(params, rel=0.02)
    assert model.macs() == pytest.approx(macs, rel=0.02)


def test_bert_base_matches_the_closed_form():
    seq, dim, mlp, layers = 128, 768, 3072, 12
    per_layer = 4 * seq * dim * dim + 2 * seq * dim * mlp + 2 * seq * seq * dim
    model = zoo.build("bert_base")
    assert model.macs() == layers * per_layer
    per_layer_params = 4 * (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim) + 2 * 2 * dim
    assert model.params() == layers * per_layer_params


@pytest.mark.parametrize("name", zoo.names())
def test_every_model_builds_round_trips_and_lowers(name):
    model = zoo.build(name, batch=2)
    assert model_to_dict(model_from_dict(model_to_dict(model))) == model_to_dict(model)
    assert sum(w.macs for w in lower(model, "infer")) == model.macs()
    train = lower(model, "train")
    assert {w.phase for w in train} == {"FF", "BP", "WU"}


@pytest.mark.parametrize("name", ["resnet9", "resnet18", "resnet50", "vgg19", "vit", "mobilenet_v1"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tinyimagenet"])
def test_small_datasets_build(name, dataset):
    model = zoo.build(name, dataset=dataset)
    classes = {"cifar10": 10, "cifar100": 100, "tinyimagenet": 200}[dataset]
    assert model.output_spec(model.outputs()[0]).shape == (1, classes)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UserError, match="resnet18"):
        zoo.build("resnet81")
    with pytest.raises(UserError, match="cifar10"):
        zoo.build("resnet18", dataset="cifar11")
