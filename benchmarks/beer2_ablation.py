"""BEER2 ablation on the same data, encoder, steps and seed: (a) pipeline — the retriever, then the
reader on its fixed candidates (configs/oke.py); (b) joint training without span queries; (c) full
BEER2 (configs/oke_beer2.py). Per row: InKB F1 per test set and micro-averaged, recall@k, the train
step's compiled memory (shared vs separate encoders) and the run's peak RSS, step time, wall time.

    python benchmarks/beer2_ablation.py --json beer2.json                      # trains all three (~1.5 h)
    python benchmarks/beer2_ablation.py --runs runs/ --json beer2.json         # reuses finished runs
    python benchmarks/beer2_ablation.py --tiny                                  # the bundled sample (minutes)

Each row trains in its own process (`python -m relik_jax.train`, so peak RSS is that row's) in
RUNS/<row>, skipped when RUNS/<row>/results.json exists. All rows share the stage-1 retriever
(RUNS/pipeline/retriever). The memory of one train step is XLA's compiled memory analysis
(arguments + temporaries + outputs − aliased) of the step each row runs, on this host's devices.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

ROOT = Path(__file__).resolve().parents[1]
ROWS = {
    "pipeline": ("(a) pipeline: retriever, then the reader on its candidates", "oke.py", []),
    "joint_no_spans": ("(b) joint, no span queries", "oke_beer2.py", ["--config.joint.span_queries=False"]),
    "beer2": ("(c) BEER2 (joint + span queries)", "oke_beer2.py", []),
}


def train_row(name: str, runs: Path, tiny: bool, extra: list[str]) -> dict:
    """Trains one row in a child process (unless its results exist); its wall time and peak RSS."""
    about, config, flags = ROWS[name]
    workdir = runs / name
    timing = workdir / "ablation_timing.json"
    if (workdir / "results.json").is_file() and timing.is_file():
        return json.loads(timing.read_text()) | {"reused": True}
    cfg = f"{ROOT / 'configs' / config}{':tiny' if tiny else ''}"
    args = [f"--config={cfg}", f"--workdir={workdir}", *flags, *extra]
    if name != "pipeline":
        args.append(f"--config.reader.retriever={runs / 'pipeline' / 'retriever' / 'export'}")
    code = (
        "import resource, sys, time, json; from relik_jax.cli.train import run; t = time.time(); "
        "rc = 0\ntry:\n run(['train', *sys.argv[1:]])\nexcept SystemExit as e:\n rc = e.code or 0\n"
        "print('ABLATION', json.dumps({'wall_s': time.time() - t, 'rc': rc, "
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    print(f"training {name}: {about} …", file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    (runs / f"{name}.log").write_text(out.stdout + out.stderr)
    found = [json.loads(x.split(" ", 1)[1]) for x in out.stdout.splitlines() if x.startswith("ABLATION ")]
    if out.returncode or not found or found[-1]["rc"]:
        raise SystemExit(f"{name} failed; see {runs / f'{name}.log'}")
    timing.write_text(json.dumps(found[-1]))
    return found[-1]


def step_time_s(workdir: Path, batch_size: int) -> float | None:
    """The median train step time of a run (its examples/s, after the first, compiling steps)."""
    rates = []
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "perf/examples_per_s" in r and r["step"] > 3:
            rates.append(r["perf/examples_per_s"])
    return batch_size / statistics.median(rates) if rates else None


def step_memory(config_file: str, tiny: bool, overrides: list[str]) -> dict[str, float]:
    """XLA's compiled memory analysis of the row's train step (MB)."""
    import jax

    from relik_jax.parallel.mesh import logical_shardings, make_mesh, shard_batch
    from relik_jax.training.config import load, validate
    from relik_jax.training.loop import make_train_step
    from relik_jax.training.optim import make_optimizer
    from relik_jax.training.run import make_task, retriever_stage, use_sample_when_no_data
    from relik_jax.training.state import TrainState

    c = load(f"{ROOT / 'configs' / config_file}{':tiny' if tiny else ''}", overrides)
    use_sample_when_no_data(c)
    out = {}
    stages = [("step", c)]
    if c.kind == "reader" and c.reader.retriever not in ("", "none"):
        stages.append(("retriever_step", retriever_stage(c)))  # the pipeline also trains the retriever
    for key, cfg in stages:
        validate(cfg)
        task = make_task(cfg)
        mesh = make_mesh((cfg.mesh.data, cfg.mesh.model))
        tx, lr = make_optimizer(cfg.optim, total_steps=100, num_layers=task.num_layers, frozen=task.frozen_keys)
        abstract = jax.eval_shape(lambda p: TrainState.create(p, tx), task.abstract_params())
        sharding = logical_shardings(abstract, mesh)
        state = jax.jit(lambda p: TrainState.create(p, tx), out_shardings=sharding)(task.init_params)
        step = make_train_step(task, tx, lr, dropout=True, accumulate=1, state_sharding=sharding, mesh=mesh)
        batch = shard_batch(task.batch(task.epoch_order(0)[0]), mesh, task.replicated_keys)
        m = step.lower(state, batch, jax.random.key(0)).compile().memory_analysis()
        total = m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
        out[f"{key}_mb"] = total / 2**20
        out[f"{key}_temp_mb"] = m.temp_size_in_bytes / 2**20
        out[f"{key}_params"] = sum(x.size for x in jax.tree.leaves(task.init_params))
    return out


def row_memory(name: str, runs: Path, tiny: bool, extra: list[str]) -> dict:
    """The row's compiled step memory (and, for BEER2, the same step with two encoders), cached in
    RUNS/<row>/ablation_memory.json."""
    cache = runs / name / "ablation_memory.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    _, cfg, flags = ROWS[name]
    overrides = [f.removeprefix("--config.") for f in flags + extra]
    overrides.append(f"reader.retriever={runs / 'pipeline' / 'retriever' / 'export'}")
    out = {"memory": step_memory(cfg, tiny, overrides)}
    if name == "beer2":  # the same step with two encoders (BEER2's memory claim)
        out["memory_separate_encoders"] = step_memory(cfg, tiny, [*overrides, "joint.share_encoder=False"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=1))
    return out


def test_rows(results: dict) -> dict[str, dict]:
    """`results.json` rows → {test set: metrics} (and the "tests (micro)" row)."""
    return {k: v for k, v in results["rows"].items() if k != "dev" and not k.startswith("dev ")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "beer2_ablation", help="the rows' workdirs")
    p.add_argument("--rows", default=",".join(ROWS), help="which rows (comma-separated)")
    p.add_argument("--tiny", action="store_true", help="the configs' :tiny variants (bundled sample)")
    p.add_argument("--no-memory", action="store_true", help="skip the compiled memory analysis")
    p.add_argument("--memory-only", action="store_true", help="only the rows' compiled step memory (cached)")
    p.add_argument("--json", type=Path)
    args, extra = p.parse_known_args(argv)  # the rest: --config.key=value overrides for every row
    if any(not x.startswith("--config.") for x in extra):
        p.error(f"unrecognized arguments: {' '.join(x for x in extra if not x.startswith('--config.'))}")
    args.extra = extra
    env = environment()
    args.runs.mkdir(parents=True, exist_ok=True)
    names = [r for r in args.rows.split(",") if r]
    if args.memory_only:
        for name in names:
            print(name, json.dumps(row_memory(name, args.runs, args.tiny, args.extra)))
        return 0
    rows = []
    for name in names:
        timing = train_row(name, args.runs, args.tiny, args.extra)
        w = args.runs / name
        results = json.loads((w / "results.json").read_text())
        config = json.loads((w / "config.json").read_text())
        row = {"row": name, "about": ROWS[name][0], **timing,
               "step_s": step_time_s(w, config["train"]["batch_size"]), "steps": results["best_step"],
               "dev": results["rows"].get("dev", {}), "tests": test_rows(results)}  # fmt: skip
        if not args.no_memory:
            row.update(row_memory(name, args.runs, args.tiny, args.extra))
        rows.append(row)
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, env)
    return 0


def format_table(rows: list[dict]) -> str:
    tests = sorted({t for r in rows for t in r["tests"] if t != "tests (micro)"})
    head = ["row", "dev F1", *[re.sub(r"_", "-", t)[:10] for t in tests], "micro F1", "R@1", "R@10", "R@100",
            "step MB", "RSS MB", "step s", "wall min"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        micro = r["tests"].get("tests (micro)", {})
        cells = [r["row"], _pct(r["dev"].get("inkb_f1"))]
        cells += [_pct(r["tests"].get(t, {}).get("inkb_f1")) for t in tests]
        cells += [_pct(micro.get("inkb_f1")), *(_pct(micro.get(f"recall_at_{k}")) for k in (1, 10, 100))]
        mem = r.get("memory", {})
        step_mb = max((v for k, v in mem.items() if k.endswith("step_mb")), default=None)
        cells += [f"{step_mb:.0f}" if step_mb else "-", f"{r['peak_rss_mb']:.0f}",
                  f"{r['step_s']:.2f}" if r.get("step_s") else "-", f"{r['wall_s'] / 60:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if "memory_separate_encoders" in r:
            a, b = r["memory"]["step_mb"], r["memory_separate_encoders"]["step_mb"]
            lines.append(f"\nBEER2 train step: {a:.0f} MB with one shared encoder, {b:.0f} MB with two "
                         f"({100 * (1 - a / b):.0f}% less); params {r['memory']['step_params']:,} vs "
                         f"{r['memory_separate_encoders']['step_params']:,}")  # fmt: skip
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
