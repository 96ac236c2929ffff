"""Markdown tables from `python -m relik_jax.aot --json` files (tpu/README.md, README "TPU"):
`python tools/aot_table.py out/*.json`. One row per (config, topology): per-chip state and step
memory against HBM, TFLOPs per step per chip, collectives, the largest batch found, compile time."""

import json
import sys
from pathlib import Path

GiB = 1024**3


def rows(paths):
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data["reports"]:
            step = r["programs"][0]
            used = step["argument_bytes"] + step["temp_bytes"] if step["fits"] else step["needed_bytes"]
            best = r.get("max_batch")
            tried = r.get("max_batch_tried") or []
            yield {
                "config": r["config"], "topology": r["topology"], "chips": r["chips"], "mesh": "x".join(map(str, r["mesh"])),
                "levers": f"remat {r['remat']}, fsdp {'on' if r['fsdp'] else 'off'}",
                "batch": step["batch"], "fits": "yes" if step["fits"] else "no",
                "state": (r["param_bytes"] + r["opt_state_bytes"]) / GiB, "used": used / GiB, "peak": step["peak_bytes"] / GiB,
                "hbm": r["hbm_bytes"] / GiB, "tflops": step["flops"] / 1e12,
                "coll": ", ".join(f"{k.replace('collective-', 'c-')} {v}" for k, v in step["collectives"].items()) or "none",
                "max": f"{best} ({len(tried)} compiles)" if best is not None else "not searched",
                "compile": step["compile_s"],
            }  # fmt: skip


def main(paths):
    print(
        "| config | slice | mesh (data x model) | levers | global batch | fits | params + Adam state GiB/chip | "
        "arguments + temporaries GiB/chip (XLA peak) | HBM GiB | TFLOP/step/chip | collectives | largest batch | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for x in rows(paths):
        print(
            f"| {x['config']} | {x['topology']} ({x['chips']} chips) | {x['mesh']} | {x['levers']} | {x['batch']} | "
            f"{x['fits']} | {x['state']:.2f} | {x['used']:.2f} ({x['peak']:.2f}) | {x['hbm']:.0f} | {x['tflops']:.1f} | "
            f"{x['coll']} | {x['max']} | {x['compile']:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
