"""The numpy references every generated kernel is checked against (float64 on CHW tensors).

Below both users: the family modules' run_layer (one layer, codegen.kernels) and
codegen.model_build (a whole model) read these, so neither imports the other.
"""
from __future__ import annotations

import numpy as np

from models.ir import Conv2d


def apply_activation(y: np.ndarray, act: str) -> np.ndarray:
    """Returns ``y`` after the fused epilogue ``act`` (none | relu | relu6)."""
    if act in ("relu", "relu6"):
        y = np.maximum(y, 0)
    return np.minimum(y, 6) if act == "relu6" else y


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> np.ndarray:
    """Returns the (C*R*S) x (Ho*Wo) im2col matrix of a CHW tensor, rows in (c, ky, kx) order."""
    channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    columns = np.empty((channels, kh, kw, out_h, out_w), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            columns[:, ky, kx] = padded[:, ky:ky + sh * out_h:sh, kx:kx + sw * out_w:sw]
    return columns.reshape(channels * kh * kw, out_h * out_w)


def reference_conv(w: np.ndarray, bias: np.ndarray | None, x: np.ndarray, op: Conv2d,
                   act: str) -> np.ndarray:
    """Returns the float64 reference of a (grouped) convolution on a CHW input."""
    groups = op.groups
    cin_g, cout_g = op.in_channels // groups, op.out_channels // groups
    outputs = []
    for group in range(groups):
        columns = im2col(x[group * cin_g:(group + 1) * cin_g].astype(np.float64), op.kernel,
                         op.stride, op.padding)
        outputs.append(w[group * cout_g:(group + 1) * cout_g].reshape(cout_g, -1).astype(np.float64)
                       @ columns)
    y = np.concatenate(outputs)
    if bias is not None:
        y = y + bias[:, None]
    out_h = (x.shape[1] + 2 * op.padding[0] - op.kernel[0]) // op.stride[0] + 1
    return apply_activation(y, act).reshape(op.out_channels, out_h, -1)


def reference_pool(x: np.ndarray, kind: str, kernel: tuple[int, int], stride: int, pad: int
                   ) -> np.ndarray:
    """Max pooling ignores the padding; average pooling counts it as zeros (like PyTorch)."""
    if kind == "gavg":
        return x.reshape(x.shape[0], -1).mean(axis=1, dtype=np.float64).reshape(-1, 1, 1)
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    out_h = (x.shape[1] + 2 * pad - kernel[0]) // stride + 1
    out_w = (x.shape[2] + 2 * pad - kernel[1]) // stride + 1
    windows = np.stack([padded[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
                        for ky in range(kernel[0]) for kx in range(kernel[1])])
    return windows.max(axis=0) if kind == "max" else windows.mean(axis=0)
