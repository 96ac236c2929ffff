"""Encoder architecture settings, read from and written back to a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
from typing import Any

from relik_jax.core.errors import CheckpointError

SUPPORTED_MODEL_TYPES = ("bert", "deberta-v2")
REMAT_POLICIES = ("none", "layer", "dots_saveable")  # none | recompute each layer | keep its matmul outputs
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """What a Flax encoder needs to know about its architecture.

    `hf_config` keeps the whole original `config.json` so that saving writes back every key the
    source had (with `vocab_size` updated when the embeddings grew).
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # DeBERTa-v2/v3 only.
    embedding_size: int | None = None
    position_biased_input: bool = True
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_buckets: int = -1
    pos_att_type: tuple[str, ...] = ()
    share_att_key: bool = False
    norm_rel_ebd: tuple[str, ...] = ()
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    # How the layers run, not what they are (never written to config.json): the attention
    # implementation (`attention.IMPLEMENTATIONS`; "auto" picks by backend) and the
    # rematerialisation of each layer in the backward pass (`REMAT_POLICIES`).
    attention: str = "auto"
    remat: str = "none"
    hf_config: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rel_span(self) -> int:
        """Half the number of relative-position embeddings a DeBERTa layer reads (`att_span`)."""
        if self.position_buckets > 0:
            return self.position_buckets
        if self.max_relative_positions > 0:
            return self.max_relative_positions
        return self.max_position_embeddings

    @property
    def max_rel_positions(self) -> int:
        """`max_relative_positions` as DeBERTa resolves it (< 1 means `max_position_embeddings`)."""
        if self.max_relative_positions < 1:
            return self.max_position_embeddings
        return self.max_relative_positions

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> EncoderConfig:
        """Reads a Hugging Face config dict; unsupported architectures raise `CheckpointError`."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"unsupported model_type {model_type!r}: relik_jax encoders support {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        try:
            kwargs = dict(
                model_type=model_type,
                vocab_size=int(hf["vocab_size"]),
                hidden_size=int(hf["hidden_size"]),
                num_layers=int(hf["num_hidden_layers"]),
                num_heads=int(hf["num_attention_heads"]),
                intermediate_size=int(hf["intermediate_size"]),
            )
        except KeyError as e:
            raise CheckpointError(f"config.json has no {e.args[0]!r}") from None
        hidden_act = hf.get("hidden_act", "gelu")
        if hidden_act not in _ACTIVATIONS:
            raise CheckpointError(f"unsupported hidden_act {hidden_act!r}; supported: {_ACTIVATIONS}")
        kwargs.update(
            hidden_act=hidden_act,
            hidden_dropout=float(hf.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", 2 if model_type == "bert" else 0)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12 if model_type == "bert" else 1e-7)),
            pad_token_id=int(hf.get("pad_token_id") or 0),
            initializer_range=float(hf.get("initializer_range", 0.02)),
        )
        if model_type == "bert":
            pos_type = hf.get("position_embedding_type", "absolute")
            if pos_type != "absolute":
                raise CheckpointError(f"unsupported BERT position_embedding_type {pos_type!r} (only 'absolute')")
        else:
            pos_att = hf.get("pos_att_type") or ()
            if isinstance(pos_att, str):
                pos_att = [p.strip() for p in pos_att.lower().split("|")]
            unknown = set(pos_att) - {"c2p", "p2c"}
            if unknown:
                raise CheckpointError(f"unsupported pos_att_type entries {sorted(unknown)}")
            norm_rel = hf.get("norm_rel_ebd") or "none"
            emb_size = hf.get("embedding_size")
            kwargs.update(
                embedding_size=int(emb_size) if emb_size else None,
                position_biased_input=bool(hf.get("position_biased_input", True)),
                relative_attention=bool(hf.get("relative_attention", False)),
                max_relative_positions=int(hf.get("max_relative_positions", -1)),
                position_buckets=int(hf.get("position_buckets", -1)),
                pos_att_type=tuple(pos_att),
                share_att_key=bool(hf.get("share_att_key", False)),
                norm_rel_ebd=tuple(x.strip() for x in norm_rel.lower().split("|")),
                conv_kernel_size=int(hf.get("conv_kernel_size", 0)),
                conv_groups=int(hf.get("conv_groups", 1)),
                conv_act=hf.get("conv_act", "tanh"),
            )
        config = cls(**kwargs, hf_config=dict(hf))
        if config.hidden_size % config.num_heads:
            raise CheckpointError(
                f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_heads}"
            )
        return config

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face config dict for this architecture (the source's keys kept)."""
        hf = dict(self.hf_config)
        hf.update(
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout,
            attention_probs_dropout_prob=self.attention_dropout,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
            initializer_range=self.initializer_range,
        )
        if self.model_type == "bert":
            hf.setdefault("architectures", ["BertModel"])
        else:
            hf.update(
                position_biased_input=self.position_biased_input,
                relative_attention=self.relative_attention,
                max_relative_positions=self.max_relative_positions,
                position_buckets=self.position_buckets,
                pos_att_type=list(self.pos_att_type),
                share_att_key=self.share_att_key,
                norm_rel_ebd="|".join(self.norm_rel_ebd) or "none",
            )
            if self.embedding_size is not None:
                hf["embedding_size"] = self.embedding_size
            if self.conv_kernel_size:
                hf.update(conv_kernel_size=self.conv_kernel_size, conv_groups=self.conv_groups, conv_act=self.conv_act)
            hf.setdefault("architectures", ["DebertaV2Model"])
        return hf

    def replace(self, **changes: Any) -> EncoderConfig:
        return dataclasses.replace(self, **changes)
