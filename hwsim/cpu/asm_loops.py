"""The loops of a kernel's machine code, found from its assembly text.

Inputs: GNU assembler text from ``gcc -S`` / ``clang -S`` (aarch64 or x86-64,
AT&T syntax) or ``llvm-objdump -d`` output (x86-64; what wasmtime's Cranelift
emits, see wasm_native.py). A loop is a backward branch: a branch at item j
whose target label sits at item i <= j of the same function spans [i, j].
Loops nest by containment; a loop's *own body* is its instructions minus those
of the loops inside it (so an outer loop's own body holds the inner loop's
set-up and tail: the prologue/epilogue cost of the inner loop).

How a loop is matched to its source loop (the choice, and why): by structure,
not by markers inside loops. Every loop gets ``name = "<function>:L<k>"`` (k-th
loop header in address order) and its depth; the cost model picks the *hot*
loop as the innermost loop doing the most multiply lanes per iteration
(``mac_lanes``), which is robust to the compiler's unrolling, peeling and
remainder loops. ``# LLVM-MCA-BEGIN name`` markers that the C places *around*
a loop nest are read too and give ``region``; markers *inside* a loop body were
tried and rejected: an ``asm volatile`` is an ordering barrier for the loads
around it, and with clang 14 -O3 even markers outside the loop let
instructions from after the loop move above the END marker, so marker-delimited
regions are not exact loop bodies anyway.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MARKER = re.compile(r"LLVM-MCA-(BEGIN|END)\s*(\S*)")
OBJDUMP_FUNCTION = re.compile(r"^([0-9a-f]+) <(.+)>:\s*$")
OBJDUMP_INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*\t(.*)$")
OBJDUMP_TARGET = re.compile(r"^(?:0x)?([0-9a-f]+)(?:\s+<[^>]*>)?$")
GNU_LABEL = re.compile(r"^([\w.$]+):(.*)$")


@dataclass(frozen=True)
class Instruction:
    """One machine instruction: its text for llvm-mca, and the label it branches to."""
    text: str
    mnemonic: str
    branch_target: str | None = None


@dataclass(frozen=True)
class AsmLoop:
    """One loop of a function: where it is, how it nests, and its instructions."""
    name: str                      # "<function>:L<k>", k-th loop of the function in address order
    function: str
    index: int
    depth: int                     # 1 = outermost loop of its function
    parent: str | None
    innermost: bool
    region: str | None             # enclosing LLVM-MCA-BEGIN marker name, if any
    body: tuple[str, ...]          # every instruction of the loop, inner loops included
    own_body: tuple[str, ...]      # instructions not inside a nested loop
    # (child loop name, own-body instructions run on every trip through that child): see
    # ``through_child``
    paths: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def text(self, own: bool = False) -> str:
        """Returns the body as llvm-mca input, one instruction per line."""
        return "\n".join(self.own_body if own else self.body) + "\n"

    def through_child(self, child: str) -> tuple[str, ...]:
        """Returns the own-body instructions every trip through the nested loop ``child`` runs.

        An outer loop's own body also holds code that a trip through one inner loop never
        runs: the other arms of an if/else chain (codegen's partial column tiles, one copy
        of the tile code per width, beside the full tile), stores behind a guard, a pixel
        tail's spill. Costing the whole own body as straight-line code charges every arm on
        every trip (Cranelift's nmgemm row loop: 869 instructions, of which the full tile's
        trip runs about 90). Kept: the blocks that dominate the child's entry or
        post-dominate its exit towards the back edge (they run on every such trip);
        conditional blocks are left out (a caller adds what it knows they do, e.g. the
        tile's stores)."""
        return dict(self.paths).get(child, self.own_body)


def _is_branch(mnemonic: str, isa: str) -> bool:
    if isa == "aarch64":
        return mnemonic == "b" or mnemonic.startswith("b.") or mnemonic in (
            "cbz", "cbnz", "tbz", "tbnz") or re.fullmatch(r"b(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)", mnemonic) is not None
    return mnemonic.startswith("j") or mnemonic in ("loop", "loope", "loopne")


def detect_isa(text: str) -> str:
    """Returns 'aarch64' or 'x86_64' from the registers the text names."""
    aarch64 = len(re.findall(r"\b(?:[xw](?:[12]?\d|30)|v\d+\.\d*[bhsd]|q\d+)\b", text))
    x86 = len(re.findall(r"%[re]?[a-z]{2,3}\b|%[xyz]mm\d+", text))
    return "x86_64" if x86 > aarch64 else "aarch64"


def _strip_comment(line: str, isa: str) -> str:
    line = line.split("//", 1)[0]
    if isa == "x86_64":
        line = line.split("#", 1)[0]
    elif line.lstrip().startswith("#"):
        line = ""
    return line.strip()


def _make_instruction(text: str, isa: str) -> Instruction:
    parts = text.split(None, 1)
    mnemonic = parts[0].lower()
    operands = parts[1] if len(parts) > 1 else ""
    target = None
    if _is_branch(mnemonic, isa) and operands:
        last = operands.split(",")[-1].strip()
        if not last.startswith(("%", "*", "x", "w")) or isa == "x86_64" and not last.startswith(("%", "*")):
            target = last
    return Instruction(text=text, mnemonic=mnemonic, branch_target=target)


# Items of one function: ("label", name) | ("insn", Instruction) | ("marker", (kind, name)).
Item = tuple


def _parse_gnu(text: str, isa: str) -> dict[str, list[Item]]:
    functions: dict[str, list[Item]] = {}
    current: list[Item] | None = None
    for raw in text.splitlines():
        marker = MARKER.search(raw)
        if marker:
            if current is not None:
                current.append(("marker", (marker.group(1), marker.group(2))))
            continue
        line = _strip_comment(raw, isa)
        if not line:
            continue
        label = GNU_LABEL.match(line)
        if label and not line.startswith("\t"):
            name = label.group(1)
            if not name.startswith("."):          # a global or local function symbol
                current = functions.setdefault(name, [])
            elif current is not None:
                current.append(("label", name))
            line = label.group(2).strip()
            if not line:
                continue
        if line.startswith(".") or current is None:
            continue                               # directive, or code outside a function
        current.append(("insn", _make_instruction(line, isa)))
    return functions


def _parse_objdump(text: str) -> dict[str, list[Item]]:
    """Returns the items of llvm-objdump -d output, with branch addresses turned into labels."""
    raw_functions: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    for line in text.splitlines():
        function = OBJDUMP_FUNCTION.match(line)
        if function:
            current = raw_functions.setdefault(function.group(2), [])
            continue
        instruction = OBJDUMP_INSTRUCTION.match(line)
        if instruction and current is not None:
            body = re.sub(r"\s+<[^>]*>$", "", _strip_comment(instruction.group(2), "x86_64"))
            if body and "(bad)" not in body:
                current.append((int(instruction.group(1), 16), body))
    functions: dict[str, list[Item]] = {}
    for name, rows in raw_functions.items():
        items: list[Item] = []
        parsed = []
        targets: set[int] = set()
        for address, body in rows:
            insn = _make_instruction(body, "x86_64")
            if insn.branch_target:
                match = OBJDUMP_TARGET.match(body.split(None, 1)[1].strip().removeprefix("*"))
                if match:
                    target = int(match.group(1), 16)
                    targets.add(target)
                    insn = Instruction(f"{insn.mnemonic}\t.Lpc_{target:x}", insn.mnemonic, f".Lpc_{target:x}")
            parsed.append((address, insn))
        for address, insn in parsed:
            if address in targets:
                items.append(("label", f".Lpc_{address:x}"))
            items.append(("insn", insn))
        functions[name] = items
    return functions


def parse_functions(text: str, isa: str | None = None) -> dict[str, list[Item]]:
    """Returns {function: items} of GNU assembler or llvm-objdump -d text."""
    if re.search(r"file format elf", text) or re.search(r"^[0-9a-f]{8,16} <.+>:\s*$", text, re.M):
        return _parse_objdump(text)
    return _parse_gnu(text, isa or detect_isa(text))


def find_loops(text: str, isa: str | None = None) -> list[AsmLoop]:
    """Returns every loop of every function in ``text``, outer loops before the loops they hold."""
    loops: list[AsmLoop] = []
    for function, items in parse_functions(text, isa).items():
        label_at = {item[1]: index for index, item in enumerate(items) if item[0] == "label"}
        spans: dict[int, int] = {}
        for index, item in enumerate(items):
            if item[0] == "insn" and item[1].branch_target in label_at:
                start = label_at[item[1].branch_target]
                if start <= index:
                    spans[start] = max(spans.get(start, index), index)
        ordered = sorted(spans.items(), key=lambda span: (span[0], -span[1]))
        regions = _regions(items)
        names = [f"{function}:L{k}" for k in range(len(ordered))]
        for k, (start, end) in enumerate(ordered):
            parents = [j for j, (s, e) in enumerate(ordered) if j != k and s <= start and end <= e
                       and (s, -e) < (start, -end)]
            children = [j for j, (s, e) in enumerate(ordered) if j != k and start <= s and e <= end
                        and (start, -end) < (s, -e)]
            inside_child = {i for j in children for i in range(ordered[j][0], ordered[j][1] + 1)}
            body = tuple(items[i][1].text for i in range(start, end + 1) if items[i][0] == "insn")
            own = tuple(items[i][1].text for i in range(start, end + 1)
                        if items[i][0] == "insn" and i not in inside_child)
            direct = [j for j in children if not any(
                i != j and i in children and ordered[i][0] <= ordered[j][0] and ordered[j][1] <= ordered[i][1]
                and (ordered[i][0], -ordered[i][1]) < (ordered[j][0], -ordered[j][1]) for i in children)]
            paths = tuple((names[j], _through(items, start, end, [ordered[i] for i in direct], ordered[j], isa))
                          for j in direct)
            loops.append(AsmLoop(name=names[k], function=function, index=k, depth=len(parents) + 1,
                                 parent=names[max(parents, key=lambda j: ordered[j][0])] if parents else None,
                                 innermost=not children, region=regions.get(start), body=body,
                                 own_body=own, paths=paths))
    return loops


def _falls_through(instruction: Instruction, isa: str) -> bool:
    """False after an unconditional jump, a return or a trap (the next item is not reached)."""
    mnemonic = instruction.mnemonic
    if isa == "aarch64":
        return mnemonic not in ("b", "br", "ret")
    return mnemonic not in ("jmp", "jmpq", "ret", "retq", "ud2")


def _through(items: list[Item], start: int, end: int, children: list[tuple[int, int]],
             child: tuple[int, int], isa: str) -> tuple[str, ...]:
    """Returns the instructions of items[start..end] outside ``children`` that lie on every
    path from the loop's header through ``child`` to a back edge (AsmLoop.through_child).

    Blocks: a child loop's span is one node; elsewhere a block starts at a label or after a
    branch. Dominators by removal: block B is on every header -> child path iff the child
    cannot be reached from the header without B (the same backwards for child -> back edge)."""
    label_at = {items[i][1]: i for i in range(start, end + 1) if items[i][0] == "label"}
    span_of = {}
    for number, (first, last) in enumerate(children):
        for i in range(first, last + 1):
            span_of[i] = number
    # blocks: (first item, last item); children first, numbered as in ``children``
    blocks: list[tuple[int, int]] = list(children)
    block_at: dict[int, int] = {}
    i = start
    while i <= end:
        if i in span_of:
            number = span_of[i]
            for j in range(children[number][0], children[number][1] + 1):
                block_at[j] = number
            i = children[number][1] + 1
            continue
        first = i
        while i <= end and i not in span_of:
            item = items[i]
            if i > first and item[0] == "label":
                break
            block_at[i] = len(blocks)
            i += 1
            if item[0] == "insn" and (item[1].branch_target is not None or not _falls_through(item[1], isa)):
                break
        blocks.append((first, i - 1))
    latch, leave = len(blocks), len(blocks) + 1          # the back edge; leaving the loop
    successors: list[set[int]] = [set() for _ in blocks]
    for number, (first, last) in enumerate(blocks):
        for j in range(first, last + 1):
            if items[j][0] != "insn":
                continue
            target = items[j][1].branch_target
            if target is not None:
                at = label_at.get(target)
                if at == start:
                    successors[number].add(latch)
                elif at is None:
                    successors[number].add(leave)
                elif not first <= at <= last:          # a child's own back edges stay inside it
                    successors[number].add(block_at.get(at, leave))
        last_insn = next((items[j][1] for j in range(last, first - 1, -1) if items[j][0] == "insn"), None)
        if last_insn is None or _falls_through(last_insn, isa):
            successors[number].add(block_at.get(last + 1, leave) if last + 1 <= end else leave)
    header = block_at.get(start, 0)
    goal = span_of[child[0]]

    def reaches(source: int, sink: int, removed: int) -> bool:
        seen, stack = {source}, [source]
        while stack:
            node = stack.pop()
            if node == sink:
                return True
            for successor in successors[node] if node < len(blocks) else ():
                if successor != removed and successor not in seen:
                    seen.add(successor)
                    stack.append(successor)
        return False

    kept = []
    for number in range(len(children), len(blocks)):
        on_path = (number == header or not reaches(header, goal, number)) if reaches(header, goal, -1) else False
        if not on_path and reaches(goal, latch, -1):
            on_path = not reaches(goal, latch, number)
        if on_path:
            first, last = blocks[number]
            kept += [items[j][1].text for j in range(first, last + 1) if items[j][0] == "insn"]
    return tuple(kept)


def _regions(items: list[Item]) -> dict[int, str]:
    """Returns {item index: name of the LLVM-MCA marker region open there}."""
    open_names: list[str] = []
    regions: dict[int, str] = {}
    for index, item in enumerate(items):
        if item[0] == "marker":
            kind, name = item[1]
            if kind == "BEGIN":
                open_names.append(name)
            elif open_names:
                open_names.pop()
        elif open_names:
            regions[index] = open_names[-1]
    return regions


_LANES_AARCH64 = {"4s": 4, "2s": 2, "2d": 2, "8h": 8, "4h": 4}
_MUL_AARCH64 = ("fmla", "fmls", "fmul", "fmadd", "fmsub", "fnmadd", "fnmsub")


def mac_lanes(instruction: str) -> int:
    """Returns the float multiply lanes of one instruction (a vector FMA or FMUL = its lane count).

    This is a classification, not a timing table: it says how much of the
    kernel's work an iteration does, so that hot-loop iterations can be derived
    from the workload's MACs whatever the compiler's unroll factor.
    """
    parts = instruction.split(None, 1)
    mnemonic = parts[0].lower()
    operands = parts[1] if len(parts) > 1 else ""
    if mnemonic in _MUL_AARCH64:
        arrangement = re.search(r"v\d+\.(\d+[sdh])", operands)
        if arrangement:
            return _LANES_AARCH64.get(arrangement.group(1), 1)
        return 1 if re.match(r"\s*[sdh]\d+", operands) else 0
    x86 = re.fullmatch(r"v?(?:f(?:n)?m(?:add|sub)\d*|mul)(ps|pd|ss|sd)", mnemonic)
    if x86:
        kind = x86.group(1)
        if kind in ("ss", "sd"):
            return 1
        width = 512 if "%zmm" in operands else 256 if "%ymm" in operands else 128
        return width // (32 if kind == "ps" else 64)
    return 0


_DIVIDE = re.compile(r"(?:u|s)div|(?:i)?div[bwlq]?")


def integer_divisions(loop: AsmLoop) -> int:
    """Returns the integer divide instructions in one iteration of ``loop`` (x86 div/idiv,
    aarch64 udiv/sdiv): the mark of index arithmetic such as an im2col gather."""
    return sum(1 for text in loop.body if _DIVIDE.fullmatch(text.split(None, 1)[0].lower()))


_VECTOR_STORE_X86 = re.compile(r"v?mov(?:u|a)p[sd]|v?movdq[au](?:32|64)?")


def memory_loads(instructions) -> int:
    """Returns the instructions among ``instructions`` that read memory (x86 AT&T: a memory
    operand before the last one, or a mov-like whose source is memory; lea, prefetches and
    stores excluded; aarch64 ldr/ldp/ld1)."""
    count = 0
    for text in instructions:
        parts = text.split(None, 1)
        mnemonic, operands = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        if mnemonic.startswith(("lea", "prefetch", "nop")):
            continue
        if mnemonic in ("ldr", "ldur", "ldp", "ld1", "ld1r"):
            count += 1
            continue
        fields = [field.strip() for field in re.split(r",(?![^(]*\))", operands) if field.strip()]
        if any("(" in field for field in fields[:-1]) or (len(fields) == 1 and "(" in fields[0]
                                                           and mnemonic.startswith(("push", "cmp", "test"))):
            count += 1
    return count


def vector_stores(instructions) -> int:
    """Returns the vector stores to memory among ``instructions`` (x86 vmovups/movdqu ... with a
    memory destination, aarch64 str/stp/st1 of q registers)."""
    count = 0
    for text in instructions:
        parts = text.split(None, 1)
        mnemonic, operands = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        if _VECTOR_STORE_X86.fullmatch(mnemonic) and operands.rstrip().endswith(")") \
                and "%" in operands.split(",")[0]:
            count += 1
        elif mnemonic in ("str", "stp", "stur") and re.match(r"\s*q\d+", operands):
            count += 2 if mnemonic == "stp" else 1
        elif mnemonic == "st1" and ".4s" in operands:
            count += operands.split("}")[0].count("v")
    return count


def loop_mac_lanes(loop: AsmLoop, own: bool = False) -> int:
    """Returns the multiply lanes one iteration of ``loop`` performs."""
    return sum(mac_lanes(text) for text in (loop.own_body if own else loop.body))


def hot_loop(loops: list[AsmLoop], function: str | None = None) -> AsmLoop | None:
    """Returns the innermost loop with the most multiply lanes per iteration (None if none multiplies)."""
    candidates = [loop for loop in loops if loop.innermost and (function is None or loop.function == function)]
    scored = [(loop_mac_lanes(loop), -loop.index, loop) for loop in candidates]
    scored = [entry for entry in scored if entry[0] > 0]
    return max(scored, key=lambda entry: entry[:2])[2] if scored else None
