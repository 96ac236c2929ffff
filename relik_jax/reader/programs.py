"""Static-shape Reader programs: prediction (spans, links, relations) and teacher-forced losses.

Each function is pure (params and arrays in, arrays out) and jit-compatible; caps (`max_starts`,
`max_entities`) are static arguments. What the official code does with boolean indexing and
`repeat_interleave` is done here with `nonzero(size=...)` + validity masks.

Decisions that differ from relik 1.0.7 (logits are identical; see README "Differences"):
- an EL end is chosen among positions at or after its start (the official may pick an earlier one);
- the `[CLS]` linking column is never chosen (the official maps it to the row's last candidate);
- padded candidate columns are masked, so rows with different candidate counts can share a batch;
- a typed span's label is the argmax of its linking *logits* (relik 1.0.7 takes it of the float32
  sigmoids, where logits above ~16.6 all round to 1.0 and the first column wins).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from relik_jax.core.types import IGNORE
from relik_jax.reader.model import MASKED, Reader, mask_logits, relation_columns

Batch = dict[str, jax.Array]


def first_k(mask_BN: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Indices of the first `k` true entries per row, their validity, and the true count per row."""
    idx = jax.vmap(lambda m: jnp.nonzero(m, size=k, fill_value=0)[0])(mask_BN).astype(jnp.int32)
    count = mask_BN.sum(-1).astype(jnp.int32)
    valid = jnp.arange(k)[None, :] < count[:, None]
    return idx, valid, count


def _apply(model: Reader, params, method, *args, rngs=None, **kwargs):
    # by name: a model wrapped by qwix (int8 inference) answers its own, intercepted, method
    name = method if isinstance(method, str) else method.__name__
    return model.apply({"params": params}, *args, method=name, rngs=rngs, **kwargs)


def predict_spans(
    model: Reader,
    params,
    batch: Batch,
    *,
    max_starts: int,
    max_entities: int,
    official_decisions: bool = False,
    text_length: int | None = None,
) -> dict[str, jax.Array]:
    """Encoder + start + end heads (+ EL linking): everything up to the entities of each row.

    batch: input_ids, attention_mask, token_type_ids, prediction_mask `[B, L]`; for EL also
    symbol_pos / symbol_valid `[B, C]` (the `[CLS]`, `--NME--`, `[E-i]` columns, in order).
    `official_decisions` reproduces relik 1.0.7's EL decisions (an end may precede its start; the
    `[CLS]` column can win) for parity checks; the logits are the same either way.
    `text_length` (static, > the last text position of every row) limits the start and end heads to
    the positions that can be starts and ends: with 32-word windows and 100 candidates that is ~64 of 512
    positions, and the `[B, S, L, H]` end-head activations are the reader's largest tensor. The
    other positions get the masked logit they would get anyway.
    """
    c = model.config
    feats = _apply(model, params, Reader.features, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    pmask = batch["prediction_mask"].astype(bool)
    length = pmask.shape[1]
    text_length = length if text_length is None else min(text_length, length)
    start = _apply(model, params, Reader.start_logits, feats[:, :text_length])
    if text_length < length:
        start = jnp.pad(start, [(0, 0), (0, length - text_length), (0, 0)], constant_values=MASKED)
    start = mask_logits(start, pmask)
    is_start = start[..., 1] > start[..., 0]  # argmax; a tie (every masked position) is no start
    starts, start_valid, n_starts = first_k(is_start, min(max_starts, text_length))
    end = _apply(model, params, Reader.end_logits, feats[:, :text_length], starts)
    if text_length < length:
        pad = [(0, 0), (0, 0), (0, length - text_length)] + [(0, 0)] * (end.ndim - 3)
        end = jnp.pad(end, pad, constant_values=MASKED)
    positions = jnp.arange(pmask.shape[1])[None, None, :]
    before_start = positions < starts[..., None]  # [B, S, L]
    out = {
        "features": feats,
        "start_logits": start,
        "starts": starts,
        "start_valid": start_valid,
        "start_overflow": jnp.maximum(n_starts - max_starts, 0),
    }
    if c.end_outputs == 1:  # EL: softmax over positions, one end per start
        end = mask_logits(end, pmask[:, None, :])
        allowed = ~pmask[:, None, :] if official_decisions else ~pmask[:, None, :] & ~before_start
        ends = jnp.argmax(jnp.where(allowed, end, -jnp.inf), axis=-1).astype(jnp.int32)
        out.update(
            end_logits=end, ent_start=starts, ent_end=ends, ent_valid=start_valid, entity_overflow=out["start_overflow"]
        )
    else:  # binary end per position: 0..n ends per start
        # (a binary end head on an EL reader, the official option, masks nothing before the start)
        masked = pmask[:, None, :] | before_start if c.spec.binary_end else pmask[:, None, :]
        end = mask_logits(end, masked)
        is_end = (end[..., 1] > end[..., 0]) & ~before_start & start_valid[..., None]
        b, s, length = is_end.shape
        flat, ent_valid, n_ents = first_k(is_end.reshape(b, s * length), max_entities)
        start_idx, end_pos = flat // length, flat % length
        out.update(
            end_logits=end,
            ent_start=jnp.take_along_axis(starts, start_idx, axis=1),
            ent_end=end_pos.astype(jnp.int32),
            ent_valid=ent_valid,
            entity_overflow=jnp.maximum(n_ents - max_entities, 0),
            start_has_end=is_end.any(-1),
        )
    if c.links:
        out.update(
            (typed_link if c.spec.typed else link)(
                model,
                params,
                feats,
                out["ent_start"],
                out["ent_end"],
                out["ent_valid"],
                batch,
                official_decisions=official_decisions,
            )
        )
    return out


def link(
    model: Reader,
    params,
    feats,
    ent_start,
    ent_end,
    ent_valid,
    batch: Batch,
    top_k: int = 5,
    official_decisions: bool = False,
) -> dict[str, jax.Array]:
    """EL linking of entities to symbol columns: logits, probabilities, decision, top-k."""
    logits = _apply(model, params, Reader.link_logits, feats, ent_start, ent_end, batch["symbol_pos"])
    cols = batch["symbol_valid"].astype(bool)[:, None, :]
    logits = jnp.where(~ent_valid[..., None] | ~cols, MASKED, logits)
    probs = jax.nn.softmax(logits, axis=-1)
    choosable = cols if official_decisions else cols & (jnp.arange(cols.shape[-1]) >= 1)  # never the [CLS] column
    scored = jnp.where(choosable, probs, -1.0)
    return _link_outputs(logits, probs, jnp.argmax(scored, axis=-1), scored, top_k)


def _link_outputs(logits, probs, column, scored, top_k: int) -> dict[str, jax.Array]:
    """The linking outputs both heads return; top-k of `scored` (probabilities, -1 where not choosable)."""
    top_p, top_c = jax.lax.top_k(scored, min(top_k, scored.shape[-1]))
    return {
        "link_logits": logits,
        "link_probs": probs,
        "link_column": column.astype(jnp.int32),
        "link_top_columns": top_c.astype(jnp.int32),
        "link_top_probs": top_p,
    }


def typed_link(
    model: Reader,
    params,
    feats,
    ent_start,
    ent_end,
    ent_valid,
    batch: Batch,
    top_k: int = 5,
    official_decisions: bool = False,
) -> dict[str, jax.Array]:
    """typed linking of entities to the span-candidate symbols: logits, sigmoid probabilities, the
    label column, top-k, and the entity embedding for the relation features (`ent_emb`)."""
    logits, probs, emb = _apply(
        model, params, Reader.typed_links, feats, ent_start, ent_end, ent_valid, batch["symbol_pos"],
        batch["symbol_valid"],
    )  # fmt: skip
    cols = batch["symbol_valid"].astype(bool)[:, None, :]
    decided = probs if official_decisions else logits  # relik 1.0.7: argmax of the float32 sigmoids
    column = jnp.argmax(jnp.where(cols, decided, -jnp.inf), axis=-1)
    out = _link_outputs(logits, probs, column, jnp.where(cols, probs, -1.0), top_k)
    if emb is not None:
        out["ent_emb"] = emb
    return out


def relation_decisions(
    model: Reader, params, subj, obj, rel, ent_valid, relation_valid, *, threshold: float
) -> dict[str, jax.Array]:
    """RE from the per-entity / per-relation vectors of `Reader.relation_vectors`: logits,
    probabilities and decisions `[B, E, E, R]`."""
    logits = _apply(model, params, Reader.relation_cells, subj, obj, rel)
    probs = jax.nn.softmax(logits, axis=-1)[..., 1]
    valid = ent_valid[:, :, None, None] & ent_valid[:, None, :, None] & relation_valid.astype(bool)[:, None, None, :]
    return {"relation_logits": logits, "relation_probs": probs, "relation_pred": (probs > threshold) & valid}


# ---- losses (teacher forcing) ------------------------------------------------------------------


def cross_entropy(logits: jax.Array, labels: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean cross-entropy over `valid` targets (0 when there is none, where PyTorch gives NaN)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(valid, labels, 0)[..., None].astype(jnp.int32), axis=-1)[..., 0]
    n = valid.sum()
    return jnp.where(n > 0, jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(n, 1), 0.0)


def reader_losses(
    model: Reader,
    params,
    batch: Batch,
    *,
    deterministic: bool = True,
    rng: jax.Array | None = None,
    span_loss_weight: float = -1.0,
) -> dict[str, jax.Array]:
    """The official training losses on gold spans (teacher forcing).

    batch (both tasks): input_ids, attention_mask, token_type_ids, prediction_mask, start_labels
    `[B, L]` (-100 ignored, 1 = gold start); gold_starts / gold_start_valid `[B, S]`; gold entities
    gold_ent_start / gold_ent_end / gold_ent_valid `[B, E]`; symbol_pos / symbol_valid `[B, C]`.
    span: gold_end_target `[B, S]` (the first gold end of each start), gold_ent_label `[B, E]`
    (gold column). triplet: end_labels `[B, S, L]`, relation_labels `[B, E, E, R]` (-100 ignored).
    cie: both (binary end_labels), with the relation columns in relation_pos / relation_valid.
    `loss` is the task's weighted sum (`TaskSpec.total_loss`; `span_loss_weight` >= 0 re-weights RE's
    span losses).
    """
    c = model.config
    rngs = {"dropout": rng} if rng is not None else None
    det = deterministic

    def call(method, *args):
        return _apply(model, params, method, *args, det, rngs=rngs)

    feats = call(Reader.features, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    pmask = batch["prediction_mask"].astype(bool)
    start = call(Reader.start_logits, feats)
    if not c.spec.binary_end:  # the official span model masks its start logits in training too
        start = mask_logits(start, pmask)
    labels = batch["start_labels"]
    losses = {"start_loss": cross_entropy(start, labels, labels != IGNORE)}
    end = call(Reader.end_logits, feats, batch["gold_starts"])
    start_valid = batch["gold_start_valid"].astype(bool)
    ent_valid = batch["gold_ent_valid"].astype(bool)
    positions = jnp.arange(pmask.shape[1])[None, None, :]
    if c.end_outputs == 1:
        end = mask_logits(end, pmask[:, None, :])
        losses["end_loss"] = cross_entropy(end, batch["gold_end_target"], start_valid)
    else:
        masked = (
            pmask[:, None, :] | (positions < batch["gold_starts"][..., None])
            if c.spec.binary_end
            else pmask[:, None, :]
        )
        end_labels = batch["end_labels"]
        losses["end_loss"] = cross_entropy(
            mask_logits(end, masked), end_labels, (end_labels != IGNORE) & start_valid[..., None]
        )
    emb = None
    if c.spec.typed:  # BCE of every (entity, span-candidate column) against the gold column
        sym_valid = batch["symbol_valid"].astype(bool)
        logits, _, emb = call(
            Reader.typed_links, feats, batch["gold_ent_start"], batch["gold_ent_end"], ent_valid,
            batch["symbol_pos"], sym_valid,
        )  # fmt: skip
        cols = jnp.arange(logits.shape[-1])
        target = (batch["gold_ent_label"][..., None] == cols).astype(jnp.float32)  # label -1: none of them
        valid = ent_valid[:, :, None] & sym_valid[:, None, :]
        bce = optax.sigmoid_binary_cross_entropy(jnp.where(valid, logits, 0.0), target)
        losses["link_loss"] = jnp.sum(jnp.where(valid, bce, 0.0)) / jnp.maximum(valid.sum(), 1)
    elif c.links:
        logits = call(Reader.link_logits, feats, batch["gold_ent_start"], batch["gold_ent_end"], batch["symbol_pos"])
        logits = jnp.where(~batch["symbol_valid"].astype(bool)[:, None, :], MASKED, logits)
        losses["link_loss"] = cross_entropy(logits, batch["gold_ent_label"], ent_valid)
    if c.relations:
        rel_pos, rel_col_valid = relation_columns(c, batch)
        rel = _apply(
            model, params, Reader.relation_logits, feats, batch["gold_ent_start"], batch["gold_ent_end"], rel_pos,
            det, emb, rngs=rngs,
        )  # fmt: skip
        rel_labels = batch["relation_labels"]
        rel_valid = (rel_labels != IGNORE) & ent_valid[:, :, None, None] & ent_valid[:, None, :, None]
        rel_valid = rel_valid & rel_col_valid.astype(bool)[:, None, None, :]
        losses["relation_loss"] = cross_entropy(rel, rel_labels, rel_valid)
    losses["loss"] = c.spec.total_loss(losses, span_loss_weight)  # the official weights by default
    return losses
