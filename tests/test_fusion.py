"""models.fusion: the one epilogue rule codegen emits and the CPU cost model costs."""
from models.fusion import add_activation, epilogue_of, fused_ops
from models.ir import Conv2d, Elementwise, GraphBuilder, Norm
from models.zoo import build as build_model
from hwsim.cpu.model_sim import model_workloads


def test_mobilenet_v1_folds_every_norm_and_relu():
    model = build_model("mobilenet_v1")
    fused = fused_ops(model)
    norms_and_relus = {op.name for op in model.ops() if isinstance(op, (Norm, Elementwise))}
    assert norms_and_relus and fused == norms_and_relus
    epilogue = epilogue_of(model, "block1.dw")
    assert epilogue.folded_norm and epilogue.activation == "relu"
    assert epilogue.fused == ("block1.dw.bn", "block1.dw.relu")


def test_resnet_add_keeps_its_kernel_and_absorbs_its_relu():
    model = build_model("resnet18")
    fused = fused_ops(model)
    adds = [op.name for op in model.ops() if isinstance(op, Elementwise) and op.function == "add"]
    assert adds and not fused & set(adds)
    for name in adds:
        relu = add_activation(model, name)
        assert relu is not None and relu in fused


def test_a_branching_output_is_not_fused():
    builder = GraphBuilder("branch")
    x = builder.input("x", (1, 8, 8, 8))
    y = builder.add(Conv2d("conv", 8, 8, 3, padding=1), x)
    a = builder.add(Elementwise("relu", "relu"), y)
    builder.add(Elementwise("sum", "add"), a, y)          # conv's output has two consumers
    model = builder.build()
    assert epilogue_of(model, "conv").fused == ()
    assert fused_ops(model) == frozenset()


def test_cpu_workloads_skip_fused_ops_in_inference_only():
    model = build_model("mobilenet_v1")
    infer_names = [getattr(w, "name", getattr(w, "layer", None)) for w in model_workloads(model, "infer")]
    assert not set(infer_names) & fused_ops(model)
    train = model_workloads(model, "train")
    assert {getattr(w, "name", None) for w in train} >= {"block1.dw.bn", "block1.dw.relu"}
