"""`relik-jax encode` (also `python -m relik_jax.encode`): embed texts (one per line) with a Flax encoder, write a .npy file.

With no `--input`, embeds the sample texts bundled with the package and prints each one's
nearest neighbour, a quick check that the embedded MiniLM encoder works.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from relik_jax.core.errors import DataError
from relik_jax.encoders.text_encoder import TextEncoder


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; a bad byte is reported with its line number."""
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    texts = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not valid UTF-8 ({e.reason})") from None
            if line:
                texts.append(line)
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relik_jax.encode", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="local Hugging Face folder, or 'minilm' (default)")
    p.add_argument("--input", type=Path, help="text file, one text per line (default: bundled sample)")
    p.add_argument("--output", type=Path, help="write the [N, H] float32 vectors here (.npy)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    if args.input is None:
        sample = resources.files("relik_jax.resources") / "sample_texts.txt"
        texts = [t for t in sample.read_text(encoding="utf-8").splitlines() if t.strip()]
        print(f"no --input given: embedding the {len(texts)} bundled sample texts")
    else:
        texts = read_lines(args.input)
        if not texts:
            raise DataError(f"{args.input} has no non-empty line")
    encoder = TextEncoder.from_pretrained(args.model, dtype=getattr(jnp, args.dtype), batch_size=args.batch_size)
    t0 = time.perf_counter()
    vectors = encoder.encode(texts, progress=len(texts) > 10 * args.batch_size)
    elapsed = time.perf_counter() - t0
    print(f"{len(texts)} texts -> {vectors.shape[1]}-d vectors in {elapsed:.2f} s (compilation included)")
    if args.output:
        np.save(args.output, vectors)
        print(f"wrote {args.output}")
    if args.input is None:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -1)
        for i, t in enumerate(texts):
            j = int(sim[i].argmax())
            print(f"  {t[:60]!r:64} ~ {texts[j][:60]!r} ({sim[i, j]:.2f})")
    return 0
