"""Reader training step: relik_jax vs the official relik 1.0.7, same model, same batches, one session.

    python benchmarks/train_step.py [--tasks triplet,span] [--n-batches 16] [--reps 3] [--json F]

The official side runs `../shared/bench/official_train.py` (its venv: `bash ../shared/bench/setup_official.sh`),
which times its own training step and dumps the exact batches it used; relik_jax then loads the same
official reader folder (MiniLM-based, `relik-reader-{span,triplet}-minilm`), converts those batches
(`relik_jax.official.batches`) and times its jitted step: forward with gold labels (dropout
on), backward, global-norm clipping 1.0, AdamW (weight decay 0.01 except biases / LayerNorm, layer-wise
decay 0.9 for span, as the official optimizers), lr 1e-5.

Static shapes: every batch is padded to our training buckets (rows to 1/2/4/8/16/32/64; length,
candidate columns, gold starts and gold entities to `relik_jax.reader.inputs.TRAIN_*_BUCKETS`, as
training does), so a shape compiles once; one
untimed pass over all batches compiles them, then `--reps` timed passes (the official side: 2
untimed steps, then its timed passes). rows/s = real rows of the N batches / median pass time.
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

import numpy as np
from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

from relik_jax.core.assets import official_models_dir, official_python
from relik_jax.core.shapes import bucket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = Path(os.environ.get("RELIK_JAX_SHARED", ROOT.parent / "shared")) / "bench"
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def run_official(python: Path, task: str, n: int, reps: int, dump: Path) -> dict:
    cmd = [str(python), str(BENCH / "official_train.py"), "--task", task, "--n-batches", str(n), "--warmup", "2",
           "--reps", str(reps), "--threads", "2", "--dump-batches", str(dump)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=BENCH)
    if r.returncode:
        raise SystemExit(f"official_train.py failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def pad_batch(b: dict[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
    """Pads a converted official batch to our static buckets (padding is masked / ignored)."""
    from relik_jax.reader.inputs import TRAIN_CAP_BUCKETS, TRAIN_COLUMN_BUCKETS, TRAIN_LENGTH_BUCKETS

    rows, length = b["input_ids"].shape
    R, L = bucket(rows, ROW_BUCKETS), bucket(length, TRAIN_LENGTH_BUCKETS)
    C = bucket(b["symbol_pos"].shape[1], TRAIN_COLUMN_BUCKETS)
    S = bucket(b["gold_starts"].shape[1], TRAIN_CAP_BUCKETS)
    E = bucket(b["gold_ent_start"].shape[1], TRAIN_CAP_BUCKETS)
    fill = {"prediction_mask": 1, "start_labels": -100, "end_labels": -100, "relation_labels": -100}
    target = {"L": L, "C": C, "S": S, "E": E}
    layout = {
        "input_ids": "RL", "attention_mask": "RL", "token_type_ids": "RL", "prediction_mask": "RL", "start_labels": "RL",
        "symbol_pos": "RC", "symbol_valid": "RC", "gold_starts": "RS", "gold_start_valid": "RS", "gold_end_target": "RS",
        "gold_ent_start": "RE", "gold_ent_end": "RE", "gold_ent_valid": "RE", "gold_ent_label": "RE",
        "end_labels": "RSL", "relation_labels": "REEC",
    }  # fmt: skip
    out = {}
    for k, v in b.items():
        dims = layout[k]
        shape = [R] + [target[d] for d in dims[1:]]
        a = np.full(shape, fill.get(k, 0), v.dtype)
        a[tuple(slice(0, s) for s in v.shape)] = v
        out[k] = a
    if task == "span" and "relation_labels" in out:
        del out["relation_labels"]
    return out


def relik_jax_side(task: str, folder: Path, npz: Path, reps: int, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp
    import ml_collections

    from relik_jax.official.batches import from_official
    from relik_jax.reader import programs
    from relik_jax.reader.checkpoint import load_reader
    from relik_jax.training.optim import make_optimizer
    from relik_jax.training.state import TrainState

    model, params, _ = load_reader(folder, dtype=jnp.bfloat16 if dtype == "bf16" else jnp.float32)
    z = np.load(npz)
    n = int(z["meta_n_batches"])
    keys = sorted({k.split("_", 1)[1] for k in z.files if k.startswith("b00000_")})
    batches, rows = [], 0
    for i in range(n):
        raw = {k: z[f"b{i:05d}_{k}"] for k in keys}
        rows += raw["input_ids"].shape[0]
        batches.append(pad_batch(from_official(raw, task), task))
    opt = ml_collections.ConfigDict(dict(learning_rate=1e-5, head_learning_rate=0.0, layer_decay=0.9 if task == "span" else 1.0,
                                         weight_decay=0.01, warmup=0, clip_norm=1.0, accumulate=1, b1=0.9, b2=0.999, eps=1e-8))  # fmt: skip
    tx, _ = make_optimizer(opt, total_steps=10**6, num_layers=model.config.encoder.num_layers)

    def step(state, batch, rng):
        key = jax.random.fold_in(rng, state.step)
        loss, grads = jax.value_and_grad(
            lambda p: programs.reader_losses(model, p, batch, deterministic=False, rng=key)["loss"]
        )(state.params)
        return state.apply_gradients(grads, tx), loss

    step = jax.jit(step, donate_argnums=0)
    state = TrainState.create(jax.device_put(params), tx)
    rng = jax.random.key(0, impl="philox4x32")
    dev = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    t0 = time.perf_counter()
    for b in dev:  # compile every shape (untimed)
        state, loss = step(state, b, rng)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    passes = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for b in dev:
            state, loss = step(state, b, rng)
        jax.block_until_ready(loss)
        passes.append(time.perf_counter() - t0)
    return {"rows": rows, "passes_s": passes, "rows_per_s": rows / statistics.median(passes),
            "first_pass_s": compile_s, "loss_last": float(loss)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="triplet,span")
    p.add_argument("--n-batches", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--quick", action="store_true", help="4 batches, 1 timed pass")
    args = p.parse_args(argv)
    env = environment()
    if args.quick:
        args.n_batches, args.reps = 4, 1
    python = official_python()
    if python is None or not (BENCH / "official_train.py").is_file():
        raise SystemExit("the official side is not set up: bash ../shared/bench/setup_official.sh")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            dump = Path(tmp) / f"{task}.npz"
            official = run_official(python, task, args.n_batches, args.reps, dump)
            off = official["per_second_median"]["rows_per_s"]
            folder = official_models_dir(python) / f"relik-reader-{task}-minilm"
            for dtype in ("fp32", "bf16"):
                # each dtype in its own process: nothing compiled or allocated by one slows the other
                code = (f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]; from benchmarks.train_step import relik_jax_side; "
                        f"print(json.dumps(relik_jax_side({task!r}, __import__('pathlib').Path({str(folder)!r}), "
                        f"__import__('pathlib').Path({str(dump)!r}), {args.reps}, {dtype!r})))")  # fmt: skip
                r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(r.stderr[-3000:])
                ours = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append({
                    "measure": f"{'el' if task == 'span' else 're'}_reader_train_step_{dtype}",
                    "relik_jax_per_s": round(ours["rows_per_s"], 2), "official_per_s": off,
                    "ratio": round(ours["rows_per_s"] / off, 3), "rows": ours["rows"],
                    "relik_jax_passes_s": [round(x, 2) for x in ours["passes_s"]],
                    "official_passes_s": official["seconds_pass"], "relik_jax_compile_pass_s": round(ours["first_pass_s"], 1),
                    "official_torch": official.get("torch"), "official_dtype": "fp32",
                })  # fmt: skip
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"load average: {os.getloadavg()[0]:.2f}; threads: 2 (official), XLA:CPU default (relik_jax)")
    print("| measure | relik_jax rows/s | official rows/s (fp32) | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['measure']} | {r['relik_jax_per_s']:.2f} | {r['official_per_s']:.2f} | {r['ratio']:.2f} |")
    if args.json:
        write_json(args.json, rows, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
