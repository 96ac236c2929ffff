"""The ReLiK Reader: one encoder pass over text + candidates, heads for spans, links and relations.

Which heads a reader has is its task's spec (`ReaderConfig.spec`, see `relik_jax.reader.spec`):
every task has the start and end heads; `span` and `cie` link entities to symbol columns
(`[CLS]`, `--NME--`, `[E-0]`, ...) with a softmax; `typed` scores them against its span-candidate
symbols with independent sigmoids and adds the probability-weighted symbol states to the relation
features; `triplet`, `typed` and `cie` score relations.

Every shape is static: `S` starts, `E` entities and `C`/`R` symbol columns per row are caps
chosen by the caller; validity masks mark the real entries, overflow counters report what did not
fit. Logits equal the official implementation's (masked entries are exactly -1e30); *decisions*
differ where the official code is unsound (see `decide_*` and README "Differences").
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relik_jax.core.errors import ConfigError
from relik_jax.encoders import EncoderConfig, build_encoder
from relik_jax.encoders import attention as attn
from relik_jax.reader.heads import EndHead, ProjectionHead
from relik_jax.reader.spec import TaskSpec, get_spec, task_name

Dtype = Any
MASKED = -1e30  # the official masked-logit value


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """Reader architecture; field names follow the official `RelikReaderConfig`."""

    task: str
    encoder: EncoderConfig
    linears_hidden_size: int = 512
    activation: str = "gelu"
    use_last_k_layers: int = 1
    binary_end_logits: bool = False
    threshold: float = 0.5
    additional_special_symbols: int = 101
    encoder_has_pooler: bool = False
    additional_special_symbols_types: int = 0  # typed: the span-candidate symbols (`--NME--`, `[E-k]`)
    add_entity_embedding: bool = True  # typed: relation features `[h_s; h_e; Σ_k p_k h_{S_k}]`
    use_nme: bool = False  # typed input layout: `--NME--` as the row's first candidate (see `inputs.typed_rows`)

    def __post_init__(self):
        object.__setattr__(self, "task", task_name(self.task))
        if self.use_last_k_layers < 1 or self.use_last_k_layers > self.encoder.num_layers:
            raise ConfigError(
                f"use_last_k_layers must be in 1..{self.encoder.num_layers}, got {self.use_last_k_layers}"
            )

    @property
    def spec(self) -> TaskSpec:
        return get_spec(self.task)

    @property
    def end_outputs(self) -> int:
        return 2 if (self.spec.binary_end or self.binary_end_logits) else 1

    @property
    def links(self) -> bool:
        return self.spec.links

    @property
    def relations(self) -> bool:
        return self.spec.relations

    @property
    def entity_embedding(self) -> bool:
        return self.spec.typed and self.add_entity_embedding

    @property
    def base_vocab_size(self) -> int:
        """The encoder's vocabulary without the reader's symbols."""
        return self.encoder.vocab_size - self.additional_special_symbols - self.additional_special_symbols_types

    def replace(self, **changes: Any) -> ReaderConfig:
        return dataclasses.replace(self, **changes)


def mask_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """`logits` with `MASKED` where `mask` (broadcast over trailing class axes) is true."""
    while mask.ndim < logits.ndim:
        mask = mask[..., None]
    return jnp.where(mask, jnp.asarray(MASKED, logits.dtype), logits)


def gather_rows(x_BLH: jax.Array, idx_BK: jax.Array) -> jax.Array:
    """`x[b, idx[b, k]]` → `[B, K, H]`, split over the mesh's 'data' axis like `x` (see
    `attention.constrain_batch`: XLA's partitioner otherwise gave every chip the heads of the global batch)."""
    x_BLH, idx_BK = attn.constrain_batch(x_BLH), attn.constrain_batch(idx_BK)
    return attn.constrain_batch(jnp.take_along_axis(x_BLH, idx_BK[..., None].astype(jnp.int32), axis=1))


class Reader(nn.Module):
    config: ReaderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        c = self.config
        d = c.linears_hidden_size
        eps = c.encoder.layer_norm_eps
        head = dict(activation=c.activation, layer_norm_eps=eps, dtype=self.dtype, param_dtype=self.param_dtype)
        self.transformer_model = build_encoder(
            c.encoder, dtype=self.dtype, param_dtype=self.param_dtype, with_pooler=c.encoder_has_pooler
        )
        self.ned_start_classifier = ProjectionHead(d, 2, with_layer_norm=False, **head)
        self.ned_end_classifier = EndHead(c.encoder.hidden_size, c.end_outputs, eps, self.dtype, self.param_dtype)
        if c.links and not c.spec.typed:
            self.ed_start_projector = ProjectionHead(d, d, **head)
            self.ed_end_projector = ProjectionHead(d, d, **head)
        if c.spec.typed:  # the span side (2H → D → D) and the symbol side (H → D → D) of the linking score
            self.re_entities_projector = ProjectionHead(d, d, **head)
            self.re_definition_projector = ProjectionHead(d, d, **head)
        if c.relations:
            self.re_projector = ProjectionHead((3 if c.entity_embedding else 2) * d, 2 * d, **head)
            self.re_relation_projector = ProjectionHead(d, d, **head)
            self.re_classifier = ProjectionHead(d, 2, with_layer_norm=False, **head)

    # ---- pieces (each usable through `apply(..., method=...)`) ----------------------------------

    def features(self, input_ids, attention_mask, token_type_ids, deterministic: bool = True) -> jax.Array:
        """Encoder features `[B, L, k·H]` (the last k layers concatenated)."""
        k = self.config.use_last_k_layers
        out = self.transformer_model(
            input_ids, attention_mask, token_type_ids, deterministic=deterministic, output_hidden_states=k > 1
        )
        if k == 1:
            return out.last_hidden_state
        return jnp.concatenate(out.hidden_states[-k:], axis=-1)

    def start_logits(self, feats_BLH, deterministic: bool = True) -> jax.Array:
        """`[B, L, 2]`, unmasked."""
        return self.ned_start_classifier(feats_BLH, deterministic)

    def end_logits(self, feats_BLH, starts_BS, deterministic: bool = True) -> jax.Array:
        """`[B, S, L]` (one logit per position) or `[B, S, L, 2]` (binary), unmasked."""
        del deterministic  # the official end head has no dropout
        logits = self.ned_end_classifier(feats_BLH, gather_rows(feats_BLH, starts_BS))
        return logits[..., 0] if self.config.end_outputs == 1 else logits

    def link_logits(self, feats_BLH, ent_start_BE, ent_end_BE, symbol_pos_BC, deterministic: bool = True) -> jax.Array:
        """EL: `[B, E, C]` scores of each entity against each symbol column, unmasked."""
        start_p, end_p = self.ed_start_projector, self.ed_end_projector
        ents = jnp.concatenate(
            [
                start_p(gather_rows(feats_BLH, ent_start_BE), deterministic),
                end_p(gather_rows(feats_BLH, ent_end_BE), deterministic),
            ],
            axis=-1,
        )
        sym = gather_rows(feats_BLH, symbol_pos_BC)
        cols = jnp.concatenate([start_p(sym, deterministic), end_p(sym, deterministic)], axis=-1)
        return jnp.einsum("bed,bcd->bec", ents, cols, preferred_element_type=jnp.float32)

    def type_logits(self, feats_BLH, ent_start_BE, ent_end_BE, symbol_pos_BC, deterministic: bool = True) -> jax.Array:
        """typed: `[B, E, C]` scores of each entity against each symbol (span candidates or relations), unmasked."""
        ents = jnp.concatenate([gather_rows(feats_BLH, ent_start_BE), gather_rows(feats_BLH, ent_end_BE)], axis=-1)
        u = self.re_entities_projector(ents, deterministic)
        v = self.re_definition_projector(gather_rows(feats_BLH, symbol_pos_BC), deterministic)
        return jnp.einsum("bed,bcd->bec", u, v, preferred_element_type=jnp.float32)

    def typed_links(
        self, feats_BLH, ent_start_BE, ent_end_BE, ent_valid_BE, symbol_pos_BC, symbol_valid_BC, deterministic=True
    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """typed: masked linking logits `[B, E, C]` (`MASKED` on padded entities and columns), their
        sigmoids (0 there) and the entity embedding `Σ_k p_k h_{S_k}` `[B, E, H]` (None without
        `add_entity_embedding`): the raw encoder states of the symbols weighted by the probabilities."""
        logits = self.type_logits(feats_BLH, ent_start_BE, ent_end_BE, symbol_pos_BC, deterministic)
        masked = ~ent_valid_BE.astype(bool)[:, :, None] | ~symbol_valid_BC.astype(bool)[:, None, :]
        logits = jnp.where(masked, MASKED, logits)
        probs = jax.nn.sigmoid(logits)
        if not self.config.entity_embedding:
            return logits, probs, None
        sym = gather_rows(feats_BLH, symbol_pos_BC)
        emb = jnp.einsum("bec,bch->beh", probs.astype(sym.dtype), sym, preferred_element_type=jnp.float32)
        return logits, probs, emb.astype(feats_BLH.dtype)

    def relation_logits(
        self, feats_BLH, ent_start_BE, ent_end_BE, relation_pos_BR, deterministic: bool = True, ent_emb_BEH=None
    ) -> jax.Array:
        """RE: `[B, E, E, R, 2]` (subject, object, relation, class), unmasked."""
        vectors = self.relation_vectors(
            feats_BLH, ent_start_BE, ent_end_BE, relation_pos_BR, deterministic, ent_emb_BEH
        )
        return self.relation_cells(*vectors, deterministic)

    def relation_vectors(
        self, feats_BLH, ent_start_BE, ent_end_BE, relation_pos_BR, deterministic: bool = True, ent_emb_BEH=None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """RE, per entity and per relation (cheap): subject `[B, E, D]`, object `[B, E, D]`, relation `[B, R, D]`.

        typed readers with `add_entity_embedding` take the entity embedding `[B, E, H]` (`typed_links`)."""
        parts = [gather_rows(feats_BLH, ent_start_BE), gather_rows(feats_BLH, ent_end_BE)]
        if self.config.entity_embedding:
            if ent_emb_BEH is None:
                raise ConfigError("this typed reader's relation features need the entity embedding (typed_links)")
            parts.append(ent_emb_BEH.astype(parts[0].dtype))
        so = self.re_projector(jnp.concatenate(parts, axis=-1), deterministic)
        d = so.shape[-1] // 2
        rel = self.re_relation_projector(gather_rows(feats_BLH, relation_pos_BR), deterministic)
        return so[..., :d], so[..., d:], rel

    def relation_cells(self, subj_BED, obj_BED, rel_BRD, deterministic: bool = True) -> jax.Array:
        """RE, per (subject, object, relation) cell (the costly part): `[B, E, E, R, 2]`."""
        cells = subj_BED[:, :, None, None, :] * obj_BED[:, None, :, None, :] * rel_BRD[:, None, None, :, :]
        return self.re_classifier(cells, deterministic)

    def __call__(self, batch: dict[str, jax.Array], deterministic: bool = True) -> dict[str, jax.Array]:
        """Teacher-forced forward on gold entities (touches every head: used by `init`)."""
        feats = self.features(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], deterministic)
        out = {
            "start_logits": self.start_logits(feats, deterministic),
            "end_logits": self.end_logits(feats, batch["gold_starts"], deterministic),
        }
        emb = None
        if self.config.spec.typed:
            out["link_logits"], _, emb = self.typed_links(
                feats, batch["gold_ent_start"], batch["gold_ent_end"], batch["gold_ent_valid"],
                batch["symbol_pos"], batch["symbol_valid"], deterministic,
            )  # fmt: skip
        elif self.config.links:
            out["link_logits"] = self.link_logits(
                feats, batch["gold_ent_start"], batch["gold_ent_end"], batch["symbol_pos"], deterministic
            )
        if self.config.relations:
            out["relation_logits"] = self.relation_logits(
                feats,
                batch["gold_ent_start"],
                batch["gold_ent_end"],
                relation_columns(self.config, batch)[0],
                deterministic,
                emb,
            )
        return out


def relation_columns(config: ReaderConfig, batch):
    """`(positions, valid)` of the relation symbols: their own `relation_*` columns when the row's
    candidates are entities (cIE), else the candidate columns `symbol_*` (RE)."""
    if config.spec.extra_relations:
        return batch["relation_pos"], batch["relation_valid"]
    return batch["symbol_pos"], batch["symbol_valid"]


def dummy_batch(
    config: ReaderConfig, batch: int = 1, length: int = 16, starts: int = 2, entities: int = 2, columns: int = 3
):
    """Zero inputs with the shapes `Reader.__call__` reads (for `init` / `eval_shape`)."""
    z = jnp.zeros
    return {
        "input_ids": z((batch, length), jnp.int32),
        "attention_mask": jnp.ones((batch, length), jnp.int32),
        "token_type_ids": z((batch, length), jnp.int32),
        "gold_starts": z((batch, starts), jnp.int32),
        "gold_ent_start": z((batch, entities), jnp.int32),
        "gold_ent_end": z((batch, entities), jnp.int32),
        "gold_ent_valid": jnp.ones((batch, entities), bool),
        "symbol_pos": z((batch, columns), jnp.int32),
        "symbol_valid": jnp.ones((batch, columns), bool),
        "relation_pos": z((batch, columns), jnp.int32),
        "relation_valid": jnp.ones((batch, columns), bool),
    }
