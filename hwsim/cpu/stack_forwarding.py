"""Loop-carried dependences through spilled registers, which llvm-mca does not see.

llvm-mca assumes loads never depend on stores (``-noalias`` defaults to true), and with
``-noalias=false`` every load waits for every older store: both are wrong for code that
keeps accumulators on the stack. wasmtime's Cranelift does that in codegen's wasm kernels
(the nmgemm 1x32 tile: eight accumulators spilled; each iteration reloads a slot, adds into
it and stores it back), so an iteration waits for the previous one's store to be forwarded
to its load: a recurrence of (store-to-load forwarding + the adds between) per iteration
that no port model shows.

``recurrence_cycles`` schedules a loop body with unlimited ports (each instruction as soon
as its operands are ready, llvm-mca's latencies per instruction) over many iterations,
where a load from a stack slot (``N(%rsp)`` / ``N(%rbp)``; those bases do not move inside a
loop) waits for the last store to that slot plus the host's forwarding latency, and every
other access is independent (as llvm-mca takes it). Its cycles per iteration are the
latency bound; cpu_model takes the larger of that and llvm-mca's figure. x86-64 AT&T
syntax only (the Cranelift disassembly); other text gives 0.
"""
from __future__ import annotations

import re

STACK_SLOT = re.compile(r"^-?(?:0x)?[0-9a-f]*\(%r[sb]p\)$")
REGISTER = re.compile(r"%([a-z0-9]+)")
ITERATIONS = 24

# AT&T two-operand instructions that only write their destination (others read it too)
_PURE_WRITE = re.compile(r"^(?:v?mov|lea|v?broadcast|vpbroadcast|v?cvt|v?pshuf|set|pop)")


def _register_family(name: str) -> str | None:
    """Returns one name per architectural register ('rax' for %eax/%ax/%al, 'v3' for %xmm3)."""
    vector = re.fullmatch(r"[xyz]mm(\d+)", name)
    if vector:
        return f"v{vector.group(1)}"
    if name in ("rip", "rsp", "rbp"):
        return name
    legacy = {"eax": "rax", "ax": "rax", "al": "rax", "ebx": "rbx", "bx": "rbx", "bl": "rbx",
              "ecx": "rcx", "cx": "rcx", "cl": "rcx", "edx": "rdx", "dx": "rdx", "dl": "rdx",
              "esi": "rsi", "si": "rsi", "sil": "rsi", "edi": "rdi", "di": "rdi", "dil": "rdi"}
    if name in legacy:
        return legacy[name]
    numbered = re.fullmatch(r"r(\d+)[dwb]?", name)
    if numbered:
        return f"r{numbered.group(1)}"
    return name if re.fullmatch(r"r[a-z]{2}", name) else None


def operands(text: str) -> tuple[str, list[str]]:
    """Returns (mnemonic, operands) of one AT&T instruction (commas inside (...) kept)."""
    parts = text.split(None, 1)
    mnemonic = parts[0].lower()
    if len(parts) == 1:
        return mnemonic, []
    operands, depth, current = [], 0, ""
    for char in parts[1]:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            operands.append(current.strip())
            current = ""
        else:
            current += char
    operands.append(current.strip())
    return mnemonic, [operand for operand in operands if operand]


def _access(text: str):
    """Returns (registers read, registers written, stack slot loaded, stack slot stored)."""
    mnemonic, parts = operands(text)
    if not parts:
        return set(), set(), None, None
    destination = parts[-1]
    reads, writes = set(), set()
    loaded = stored = None
    for operand in parts[:-1]:
        if "(" in operand:
            reads |= {f for f in map(_register_family, REGISTER.findall(operand)) if f}
            if STACK_SLOT.match(operand):
                loaded = operand
        else:
            reads |= {f for f in map(_register_family, REGISTER.findall(operand)) if f}
    if "(" in destination:                         # a store (or a read-modify-write of memory)
        reads |= {f for f in map(_register_family, REGISTER.findall(destination)) if f}
        if STACK_SLOT.match(destination) and not mnemonic.startswith(("cmp", "test")):
            stored = destination
    else:
        family = _register_family(destination.lstrip("%"))
        if family and not mnemonic.startswith(("cmp", "test", "j")):
            writes.add(family)
            three_operand = len(parts) >= 3 and mnemonic.startswith("v") and "fmadd" not in mnemonic \
                and "fmsub" not in mnemonic and "fnmadd" not in mnemonic
            # xorps %x, %x (and its three-operand form): a zeroing idiom, no input
            zeroing = re.match(r"v?p?xor|v?p?sub", mnemonic) is not None and len(set(parts)) == 1
            if zeroing:
                reads.clear()
            elif not (_PURE_WRITE.match(mnemonic) or three_operand):
                reads.add(family)
    return reads, writes, loaded, stored


def recurrence_cycles(body: list[str], latencies: list[float], forward_cycles: float,
                      iterations: int = ITERATIONS) -> float:
    """Returns cycles per iteration of ``body`` with unlimited ports, its stack slots carrying
    values from stores to later loads ``forward_cycles`` after the stored value is ready."""
    if len(body) != len(latencies) or not body:
        return 0.0
    accesses = [_access(text) for text in body]
    ready: dict[str, float] = {}          # register -> cycle its value is ready
    slot_ready: dict[str, float] = {}     # stack slot -> cycle a load may have its value
    finish = []
    for _ in range(iterations):
        last = 0.0
        for (reads, writes, loaded, stored), latency in zip(accesses, latencies):
            start = max((ready.get(register, 0.0) for register in reads), default=0.0)
            done = start + latency
            if loaded is not None and loaded in slot_ready:
                done = max(done, slot_ready[loaded])
            if stored is not None:
                slot_ready[stored] = start + forward_cycles
            for register in writes:
                ready[register] = done
            last = max(last, done)
        finish.append(last)
    half = iterations // 2
    return (finish[-1] - finish[half - 1]) / (iterations - half)


def mca_latencies(text: str) -> list[float]:
    """Returns the Latency column of llvm-mca's instruction info, one per instruction."""
    section = text.split("Instructions:", 1)[-1]
    latencies = []
    for line in section.splitlines():
        match = re.match(r"^\s*\d+\s+(\d+)\s+[\d.]+\s", line)
        if match:
            latencies.append(float(match.group(1)))
        elif latencies and not line.strip():
            break
    return latencies
