"""SCALE-Sim topology CSVs (conv and GEMM formats, as scalesim 3.x reads them).

Conv rows: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width,
Channels, Num Filter, Strides[, N:M sparsity],`` (the IFMAP is already padded,
so the convolution has no padding; rows whose name contains ``DP`` are depthwise:
scalesim runs one layer per channel, which is a grouped convolution here).
scalesim 3.0.0 sizes the ofmap ceil((H - R + stride) / stride), one more than
the usual floor((H - R) / stride) + 1 when the stride does not divide H - R
(its ResNet conv1 row, 230 x 230 with 7 x 7 / 2, gives 113 x 113): the last
window runs off the edge and reads zeros. The importer reproduces that by
extending the Input by those zero rows/columns, so lowering gives scalesim's M.
GEMM rows: ``Layer, M, N, K[, N:M],``; scalesim maps them onto a convolution with
an M x K ifmap, one 1 x K filter per output column and one channel, so lowering
gives back exactly (M, N, K). The format is told from the header's column count
(scalesim takes it from its config). Rows may end with scalesim's trailing comma
or not (scalesim itself always drops the last cell, so it needs the comma).
Every row becomes its own layer fed by its own input: a topology is a list of
independent layers. A name that repeats gets a suffix (``conv_2``): scalesim
allows repeats, IR op names must be unique. Errors name the file's line.
"""
from __future__ import annotations

import csv
import io

from models.errors import UserError, printable
from models.inputs import check_range, limit, read_text
from models.ir import Conv2d, GraphBuilder, Model
from models.patterns import NM

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                "Channels", "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer", "M", "N", "K")


def _cells(row: list[str]) -> list[str]:
    cells = [cell.strip() for cell in row]
    if cells and cells[-1] == "":
        cells.pop()             # scalesim's trailing comma
    return cells


# Each column's sane range (models/inputs.py LIMITS): a 10^30 or 2^63 size is refused here
# with the range, not by a MemoryError when the simulator sizes its folds.
_COLUMN_LIMITS = {"IFMAP Height": "spatial", "IFMAP Width": "spatial", "Filter Height": "kernel",
                  "Filter Width": "kernel", "Channels": "channels", "Num Filter": "channels",
                  "Strides": "kernel", "M": "dim", "N": "dim", "K": "dim"}


def _positive(value: str, path: str, line: int, column: str) -> int:
    where = f"line {line}, column '{column}'"
    if not value.lstrip("+-").isdigit() or not value.isascii():
        raise UserError(f"'{printable(value[:30])}' is not a whole number", source=path, field=where,
                        fix="give whole numbers for sizes")
    if len(value) > 19:
        raise UserError(f"a {len(value)}-digit size is too large", source=path, field=where,
                        fix=f"give a value in {limit(_COLUMN_LIMITS.get(column, 'dim')).describe()}")
    number = int(value)
    if number < 1:
        raise UserError(f"{column} is {number}", source=path, field=where, fix="sizes must be >= 1")
    check_range(number, limit(_COLUMN_LIMITS.get(column, "dim")), source=path, field=where)
    return number


def _sparsity(value: str | None, path: str, line: int) -> NM | None:
    if value is None or value.strip() in ("", "1:1"):
        return None
    try:
        n, m = (int(part) for part in value.split(":"))
        return NM(n, m)
    except (ValueError, UserError):
        raise UserError(f"sparsity '{value}' is not N:M", source=path,
                        field=f"line {line}, sparsity column",
                        fix="write e.g. 2:4, or 1:1 for dense") from None


def load_topology(path: str, batch: int = 1) -> Model:
    """Returns the topology as a model of independent layers (batch multiplies the ifmap count)."""
    text = read_text(path, what="SCALE-Sim topology CSV")
    csv_error = csv.Error
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv_error as error:     # e.g. a field over the csv module's 128 KiB field limit
        raise UserError(f"not a readable CSV: {printable(str(error))}", source=path,
                        field=f"line {reader.line_num + 1}",
                        fix="give a SCALE-Sim topology CSV (short comma-separated fields)") from None
    if len(rows) < 2:
        raise UserError("no layers (a header row and at least one layer row are needed)",
                        source=path, fix=f"columns: {', '.join(CONV_COLUMNS)}")
    header_line, header_row = rows[0]
    header = _cells(header_row)
    if len(header) >= len(CONV_COLUMNS):
        kind, columns = "conv", CONV_COLUMNS
    elif len(header) >= len(GEMM_COLUMNS):
        kind, columns = "gemm", GEMM_COLUMNS
    else:
        raise UserError(f"header has {len(header)} columns", source=path,
                        field=f"line {header_line}",
                        fix=f"conv format: {', '.join(CONV_COLUMNS)}; GEMM format: "
                            f"{', '.join(GEMM_COLUMNS)}")
    name = str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0] or "topology"
    builder = GraphBuilder(name)
    used: set[str] = set()
    for line, row in rows[1:]:
        cells = _cells(row)
        if len(cells) < len(columns):
            raise UserError(f"{len(cells)} columns, {kind} format needs {len(columns)}", source=path,
                            field=f"line {line}", fix=f"columns: {', '.join(columns)}")
        layer = base = cells[0] or f"line{line}"
        repeat = 1
        while layer in used:        # scalesim allows repeated names; IR ops need unique ones
            repeat += 1
            layer = f"{base}_{repeat}"
        used.add(layer)
        sizes = [_positive(value, path, line, column)
                 for value, column in zip(cells[1:len(columns)], columns[1:])]
        pattern = _sparsity(cells[len(columns)] if len(cells) > len(columns) else None, path, line)
        if kind == "gemm":
            m, n, k = sizes
            check_range(m * k, limit("tensor_elements"), source=path,
                        field=f"line {line}, M x K")
            x = builder.input(f"{layer}.input", (batch, 1, m, k))
            op = Conv2d(layer, 1, n, (1, k), sparsity=pattern)
        else:
            height, width, filter_h, filter_w, channels, filters, stride = sizes
            check_range(channels * height * width, limit("tensor_elements"), source=path,
                        field=f"line {line}, ifmap Channels x Height x Width")
            if "DP" in base:
                check_range(channels * filters, limit("channels"), source=path,
                            field=f"line {line}, Channels x Num Filter (depthwise)")
            if filter_h > height or filter_w > width:
                raise UserError(f"filter {filter_h}x{filter_w} is larger than the ifmap "
                                f"{height}x{width}", source=path, field=f"line {line}",
                                fix="the IFMAP size must include the padding")
            # scalesim sizes the ofmap ceil((ifmap - filter + stride) / stride) and reads the
            # last, partial window's missing pixels as zeros (operand_matrix.calc_ifmap_elem_addr
            # marks them -1): that is a conv with floor sizing on an ifmap extended by these
            # zero rows/columns at the bottom/right.
            extra_h, extra_w = -(height - filter_h) % stride, -(width - filter_w) % stride
            x = builder.input(f"{layer}.input", (batch, channels, height + extra_h, width + extra_w))
            if "DP" in base:       # scalesim: depthwise iff the name contains DP
                op = Conv2d(layer, channels, channels * filters, (filter_h, filter_w), stride,
                            groups=channels, sparsity=pattern)
            else:
                op = Conv2d(layer, channels, filters, (filter_h, filter_w), stride, sparsity=pattern)
        try:
            builder.add(op, x)
        except UserError as error:
            raise UserError(error.message, source=path, field=f"line {line}", fix=error.fix) from None
    return builder.build()


def write_topology(model_workloads, path: str) -> None:
    """Writes FF GEMM workloads as a SCALE-Sim GEMM-format topology (atomically)."""
    from models.fileio import write_atomic

    lines = ["Layer, M, N, K,"]
    for workload in model_workloads:
        for group in range(workload.groups):
            suffix = f"_g{group}" if workload.groups > 1 else ""
            lines.append(f"{workload.layer}{suffix}, {workload.M}, {workload.N}, {workload.K},")
    write_atomic(path, "\n".join(lines) + "\n")
