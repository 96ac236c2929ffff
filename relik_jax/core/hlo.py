"""Reading XLA's optimized HLO text: which kernel runs each dot.

On XLA:CPU a dot is fast only when YNNPACK takes it (a fusion whose backend config says
`__ynn_fusion`) with operands it has kernels for: float32, bfloat16 with a float32 result, int8
with an int32 result. A bf16 dot that lowers without the f32 result type is upcast to float32
first (5x slower on our CPUs, `../shared/PERF.md` §4); a dot YNNPACK does not take runs in Eigen.
`dot_census(jax.jit(f).lower(...).compile().as_text())` counts the dots of a program by kernel and
operand type, so a test can pin how many run outside the fast kernels.
"""

from __future__ import annotations

import collections
import dataclasses
import re

_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%(?P<name>[\w.\-]+)\s*\((?P<params>.*)\)\s*->.*\{\s*$")
_PARAM = re.compile(r"(?P<name>[\w.\-]+):\s*(?P<dtype>[a-z]+\d*)\[")
_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<dtype>[a-z]+\d*)\[[^\]]*\][^ ]*\s+(?P<op>[\w\-]+)\((?P<args>[^)]*)\)"
)
_CALLS = re.compile(r"calls=%(?P<callee>[\w.\-]+)")


@dataclasses.dataclass(frozen=True)
class Dot:
    """One dot of a compiled program: the kernel family running it and its types."""

    kernel: str  # "ynnpack" (inside a __ynn_fusion) or "xla" (Eigen / XLA's own emitter)
    lhs: str  # operand element type as XLA spells it: f32, bf16, s8, u8, ...
    rhs: str
    out: str
    name: str
    op_name: str  # the JAX op that produced it (from the metadata), for finding it in the source

    @property
    def fast(self) -> bool:
        """YNNPACK with operands it has low-precision kernels for (bf16 → f32, int8 → int32)."""
        return self.kernel == "ynnpack" and self.lhs in ("bf16", "s8", "u8") and self.rhs in ("bf16", "s8")


def dots(hlo_text: str) -> list[Dot]:
    """Every `dot` instruction of an optimized HLO module, classified."""
    ynn: set[str] = set()
    per_computation: dict[str, list[tuple[str, str, list[str], str]]] = collections.defaultdict(list)
    types: dict[str, dict[str, str]] = collections.defaultdict(dict)
    current = None
    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current = m["name"]
            for p in _PARAM.finditer(m["params"]):
                types[current][p["name"]] = p["dtype"]
            continue
        if current is None:
            continue
        if '"__ynn_fusion"' in line:
            c = _CALLS.search(line)
            if c:
                ynn.add(c["callee"])
        i = _INSTR.match(line)
        if not i:
            continue
        types[current][i["name"]] = i["dtype"]
        if i["op"] == "dot":
            args = [a.strip().lstrip("%") for a in i["args"].split(",")]
            op = re.search(r'op_name="([^"]*)"', line)
            per_computation[current].append((i["name"], i["dtype"], args, op[1] if op else ""))
    out = []
    for comp, found in per_computation.items():
        for name, dtype, args, op_name in found:
            lhs, rhs = (types[comp].get(a, "?") for a in args[:2])
            out.append(Dot("ynnpack" if comp in ynn else "xla", lhs, rhs, dtype, name, op_name))
    return out


def dot_census(hlo_text: str) -> collections.Counter[str]:
    """`{"ynnpack bf16xbf16->f32": n, "xla f32xf32->f32": m, ...}` for a compiled program."""
    return collections.Counter(f"{d.kernel} {d.lhs}x{d.rhs}->{d.out}" for d in dots(hlo_text))


def slow_dots(hlo_text: str) -> list[Dot]:
    """The dots that do not run in a YNNPACK low-precision kernel (upcast f32, or outside YNNPACK)."""
    return [d for d in dots(hlo_text) if not d.fast]
