"""Shared fixtures: small models built in code, and the CI rule for missing tools."""
from __future__ import annotations

import os
import shutil

import pytest

from models.ir import Conv2d, Dense, Elementwise, GraphBuilder, Model, Pool2d, Reshape


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def require_tools(*tools: str) -> None:
    """Skips (locally) or fails (in CI) when a system tool is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        message = f"missing system tools {missing}: run `make sysdeps` as root"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def require_target(target: str, flavour: str) -> None:
    """Skips (locally) or fails (CI) when the target's tools are missing; skips a flavour the
    host CPU lacks (AVX-512 is detected, never assumed: that skip is about hardware)."""
    from codegen import build as kernel_build

    problems = kernel_build.target_problems(target)
    if problems:
        if in_ci():
            pytest.fail(f"{target}: {problems}")
        pytest.skip(f"{target}: {problems}")
    if flavour not in kernel_build.runnable_flavours(target):
        pytest.skip(f"{target} CPU lacks {flavour}")


def small_cnn(channels: int = 16, classes: int = 10, size: int = 16) -> Model:
    """Returns conv(3->c) relu conv(c->2c, stride 2) pool fc: first layer stays dense at m=8."""
    builder = GraphBuilder("small_cnn")
    x = builder.input("image", (1, 3, size, size))
    x = builder.add(Conv2d("conv1", 3, channels, 3, padding=1), x)
    x = builder.add(Elementwise("relu1", "relu"), x)
    x = builder.add(Conv2d("conv2", channels, 2 * channels, 3, stride=2, padding=1), x)
    x = builder.add(Elementwise("relu2", "relu"), x)
    x = builder.add(Conv2d("conv3", 2 * channels, 2 * channels, 1), x)
    x = builder.add(Pool2d("pool", global_pool=True), x)
    x = builder.add(Reshape("flatten"), x)
    builder.add(Dense("fc", 2 * channels, classes), x)
    return builder.build()


@pytest.fixture
def cnn() -> Model:
    return small_cnn()
