"""Flax encoder vs transformers' PyTorch `BertModel` on the MiniLM weights: forward and training step.

Each side runs in its own process (so PyTorch's OpenMP threads and XLA's never compete), the
two sides alternate over several rounds, and the table reports medians over every timed call of
every round (minimums in the JSON). Compile time is excluded (one warm-up call per shape).

    python benchmarks/encoder.py                 # full table (5 shapes, fwd + train, fp32 + bf16)
    python benchmarks/encoder.py --quick         # < 2 minutes
    python benchmarks/encoder.py --json out.json

Rows: `{"shape", "mode", "dtype", "jax_ms", "torch_ms", "ratio"}` with ratio = torch_ms / jax_ms
(> 1: relik_jax is faster). `torch_ms` is always PyTorch **fp32** (the baseline the targets are
stated against); bf16 and int8 rows add `torch_bf16_ms` and `ratio_vs_torch_bf16` (PyTorch bf16:
`model.to(bfloat16)` for the forward, `torch.autocast` for training). `--dtypes fp32,bf16,int8`:
int8 = the dense layers as int8 dots (`relik_jax.encoders.quantize`, qwix SmoothQuant), forward only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

SHAPES = ("1x128", "8x128", "32x128", "1x512", "8x512")
QUICK_SHAPES = ("1x128", "8x128", "1x512")
ROOT = Path(__file__).resolve().parents[1]


def _shape(s: str) -> tuple[int, int]:
    b, length = s.split("x")
    return int(b), int(length)


def _inputs(shape: str, seed: int = 0):
    import numpy as np

    b, length = _shape(shape)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, (b, length)).astype(np.int32)
    ids[:, 0] = 101
    mask = np.ones((b, length), np.int32)
    if b > 1:  # a little padding, as real batches have
        mask[-1, length * 3 // 4 :] = 0
        ids[-1, length * 3 // 4 :] = 0
    return ids, mask


def _time(fn, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def worker_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from relik_jax.core.assets import default_encoder_path
    from relik_jax.encoders.hf import load_encoder

    dtype = jnp.float32 if args.dtype == "fp32" else jnp.bfloat16
    module, params, _ = load_encoder(default_encoder_path(), dtype=dtype)
    if args.dtype == "int8":  # dense layers int8 (qwix, SmoothQuant), attention bf16; forward only
        import numpy as np

        from relik_jax.encoders import quantize

        ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
        # the smoothing scales from one batch of random tokens: they change the values, not the speed
        cal = jnp.asarray(np.random.default_rng(0).integers(1000, 20000, (4, 128)), jnp.int32)
        module, params = quantize.int8(
            module, params, ids, ids, method="__call__", calibration=[(cal, jnp.ones_like(cal))]
        )
        args.modes = "fwd"
    params = jax.device_put(params)

    @jax.jit
    def forward(p, ids, mask):
        return module.apply({"params": p}, ids, mask).last_hidden_state

    tx = optax.adamw(1e-5, weight_decay=0.01)

    def loss_fn(p, ids, mask, rng):
        h = module.apply({"params": p}, ids, mask, deterministic=False, rngs={"dropout": rng}).last_hidden_state
        return jnp.mean(h * h)

    def train_step(p, opt_state, ids, mask, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, ids, mask, rng)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    results = {}
    # inference as the library runs it (ReaderPipeline.from_pretrained): bf16 layer kernels cast once
    from relik_jax.encoders.layers import layer_kernels_in

    inference = layer_kernels_in(params, jnp.bfloat16) if args.dtype != "fp32" else params
    for shape in args.shapes.split(","):
        ids, mask = (jnp.asarray(x) for x in _inputs(shape))
        if "fwd" in args.modes:
            forward(inference, ids, mask).block_until_ready()
            results[f"{shape}/fwd"] = _time(lambda: forward(inference, ids, mask).block_until_ready(), args.iters)
        if "train" in args.modes:
            state = {"p": jax.tree.map(jnp.copy, params)}
            state["o"] = tx.init(state["p"])
            key = jax.random.key(0, impl="philox4x32")

            def step(i=[0]):  # noqa: B006 - a step counter
                i[0] += 1
                state["p"], state["o"], loss = train_step(
                    state["p"], state["o"], ids, mask, jax.random.fold_in(key, i[0])
                )
                loss.block_until_ready()

            step()
            results[f"{shape}/train"] = _time(step, args.train_iters)
    return results


def worker_torch(args) -> dict:
    import torch
    from transformers import BertModel

    from relik_jax.core.assets import default_encoder_path

    torch.set_num_threads(args.threads)
    model = BertModel.from_pretrained(str(default_encoder_path()))
    results = {}
    bf16 = args.dtype == "bf16"
    for shape in args.shapes.split(","):
        ids, mask = (torch.from_numpy(x).long() for x in _inputs(shape))
        if "fwd" in args.modes:
            m = model.eval().to(torch.bfloat16 if bf16 else torch.float32)

            def fwd():
                with torch.inference_mode():
                    m(input_ids=ids, attention_mask=mask)

            fwd()
            results[f"{shape}/fwd"] = _time(fwd, args.iters)
        if "train" in args.modes:
            m = BertModel.from_pretrained(str(default_encoder_path())).train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-5, weight_decay=0.01)

            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    h = m(input_ids=ids, attention_mask=mask).last_hidden_state
                loss = (h.float() * h.float()).mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            step()
            results[f"{shape}/train"] = _time(step, args.train_iters)
    return results


def run_worker(side: str, dtype: str, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [
        sys.executable, __file__, "--worker", side, "--dtype", dtype, "--shapes", args.shapes,
        "--modes", args.modes, "--iters", str(args.iters), "--train-iters", str(args.train_iters),
        "--threads", str(args.threads), "--out", out,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.setdefault("HF_HUB_OFFLINE", "1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())


def markdown_table(rows: list[dict]) -> str:
    def f(x, spec):
        return format(x, spec) if x is not None else "–"

    lines = [
        "| shape | mode | dtype | relik_jax ms | PyTorch fp32 ms | ratio | PyTorch bf16 ms | vs bf16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['mode']} | {r['dtype']} | {f(r['jax_ms'], '.1f')} | {f(r['torch_ms'], '.1f')} | "
            f"**{f(r['ratio'], '.2f')}** | {f(r.get('torch_bf16_ms'), '.1f')} | {f(r.get('ratio_vs_torch_bf16'), '.2f')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 shapes, 1 round: under two minutes")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--modes", default="fwd,train")
    p.add_argument("--dtypes", default="fp32,bf16,int8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--train-iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.add_argument("--from-json", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    env = environment()

    if args.worker:
        results = (worker_jax if args.worker == "jax" else worker_torch)(args)
        Path(args.out).write_text(json.dumps(results))
        return 0

    if args.from_json:  # re-render a saved run
        print(markdown_table(json.loads(Path(args.from_json).read_text())))
        return 0
    if args.quick:
        args.shapes, args.rounds, args.iters, args.train_iters = ",".join(QUICK_SHAPES), 1, 3, 2
    print(f"load average: {os.getloadavg()[0]:.2f}; threads: {args.threads}; rounds: {args.rounds}", flush=True)
    times: dict[tuple[str, str, str], list[float]] = {}
    t0 = time.time()
    for r in range(args.rounds):
        for dtype in args.dtypes.split(","):
            sides = ("jax", "torch") if r % 2 == 0 else ("torch", "jax")
            if dtype == "int8":  # no PyTorch int8 side: its rows compare with PyTorch fp32 and bf16
                sides = ("jax",)
            for side in sides:
                for key, ts in run_worker(side, dtype, args).items():
                    times.setdefault((side, dtype, key), []).extend(ts)
        print(f"round {r + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", flush=True)

    def med(side, dtype, key):
        ts = times.get((side, dtype, key))
        return (statistics.median(ts), min(ts)) if ts else (None, None)

    rows = []
    for shape in args.shapes.split(","):
        for mode in args.modes.split(","):
            key = f"{shape}/{mode}"
            torch32, torch32_min = med("torch", "fp32", key)
            for dtype in args.dtypes.split(","):
                jax_ms, jax_min = med("jax", dtype, key)
                if jax_ms is None:
                    continue
                row = {"shape": shape, "mode": mode, "dtype": dtype, "jax_ms": round(jax_ms, 2),
                       "torch_ms": round(torch32, 2) if torch32 else None,
                       "ratio": round(torch32 / jax_ms, 3) if torch32 else None,
                       "jax_min_ms": round(jax_min, 2), "torch_min_ms": round(torch32_min, 2) if torch32 else None}  # fmt: skip
                if dtype in ("bf16", "int8"):
                    t16, _ = med("torch", "bf16", key)
                    row["torch_bf16_ms"] = round(t16, 2) if t16 else None
                    row["ratio_vs_torch_bf16"] = round(t16 / jax_ms, 3) if t16 else None
                rows.append(row)

    header = f"{'shape':>7} {'mode':>5} {'dtype':>5} {'jax ms':>9} {'torch fp32 ms':>14} {'ratio':>6} {'torch bf16 ms':>14} {'vs bf16':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        t16 = r.get("torch_bf16_ms")
        print(
            f"{r['shape']:>7} {r['mode']:>5} {r['dtype']:>5} {r['jax_ms']:>9.1f} {r['torch_ms'] or float('nan'):>14.1f} "
            f"{r['ratio'] or float('nan'):>6.2f} {t16 if t16 else float('nan'):>14.1f} {r.get('ratio_vs_torch_bf16') or float('nan'):>7.2f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}; wall {time.time() - t0:.0f} s")
    if args.markdown:
        print(markdown_table(rows))
    if args.json:
        write_json(args.json, rows, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
