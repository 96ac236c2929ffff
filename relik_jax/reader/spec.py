"""What each reader task is: its heads, its candidates, its labels, its loss, its data and metric.

Code asks the spec (`spec.links`, `spec.relations`, ...), never the task's name. Tasks:
- `span` (EL): start head, one end per start (softmax over positions), linking of each span to the
  row's entity symbols (`--NME--`, `[E-k]`); relik 1.0.7's `RelikReaderSpanModel`.
- `triplet` (RE): start head, binary end head (0..n ends per start), relation scores for every
  (subject, object, relation) of the row's entities and its `[R-i]` symbols; `RelikReaderREModel`.
- `typed` (RE with typed entities / closed IE, relik 1.0.7's `relik-cie-*` readers: a
  `RelikReaderREModel` with `entity_type_loss`): `[CLS] text [SEP] S0 c0 S1 c1 … [SEP] [R-0] r0 … [SEP]`
  with S = `--NME--`, `[E-0]`, …; the RE heads, every span scored against every span-candidate symbol
  (independent sigmoids; its label is the best), the probability-weighted symbol states added to the
  relation features, the loss the mean of four terms.
- `cie` (closed IE, ours): both in one pass over `[CLS] text [SEP] --NME-- [E-k] … [R-i] … [SEP]`: the RE
  start/end heads, EL linking of every entity, relation scores between entities (ours: relik
  1.0.7's closed-IE reader is a typed-entity RE model, another layout).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from relik_jax.core.errors import ConfigError


def _span_loss(losses: Mapping, span_weight: float) -> object:
    del span_weight  # the EL weights are fixed (official)
    return losses["start_loss"] + losses["end_loss"] + losses["link_loss"]


def _triplet_loss(losses: Mapping, span_weight: float) -> object:
    if span_weight >= 0:  # `reader.span_loss_weight`: the span losses re-weighted against the relation loss
        return span_weight * (losses["start_loss"] + losses["end_loss"]) + 0.9 * losses["relation_loss"]
    return (losses["start_loss"] + losses["end_loss"]) / 20 + 0.9 * losses["relation_loss"]  # official


def _cie_loss(losses: Mapping, span_weight: float) -> object:
    del span_weight  # as the official typed-entity reader: the mean of the four losses
    return (losses["start_loss"] + losses["end_loss"] + losses["link_loss"] + losses["relation_loss"]) / 4


def _typed_loss(losses: Mapping, span_weight: float) -> object:
    if span_weight >= 0:  # `reader.span_loss_weight`: spans and their types re-weighted as RE's spans
        span_side = losses["start_loss"] + losses["end_loss"] + losses["link_loss"]
        return span_weight * span_side + 0.9 * losses["relation_loss"]
    return _cie_loss(losses, span_weight)  # official: the mean of the four losses


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    links: bool  # a linking head: entities scored against the row's entity symbols (`--NME--`, `[E-k]`)
    relations: bool  # a relation head: (subject, object, relation) cells
    binary_end: bool  # ends are binary per position (0..n per start); else one end per start (softmax)
    candidates: str  # what a row's candidate columns are: "entities" or "relations"
    dataset_kind: str  # the records it trains on (`data.formats.PARSERS`): "el" or "re"
    main_metric: str  # the dev metric that selects the best checkpoint
    architecture: str  # `architectures` in the reader folder's config.json
    official: bool  # relik 1.0.7 has this architecture (a folder it loads)
    total_loss: Callable[[Mapping, float], object]  # (the head losses, `reader.span_loss_weight`) → loss
    typed: bool = False  # links are the official typed-entity head (sigmoid per symbol, entity embedding)

    @property
    def extra_relations(self) -> bool:
        """Rows carry relation candidates after their entity candidates (their own `[R-i]` columns)."""
        return self.relations and self.candidates == "entities"

    @property
    def candidate_symbol(self) -> str:
        """The symbol before a candidate (its pieces are cached as they follow it)."""
        return "[E-0]" if self.candidates == "entities" else "[R-0]"


SPECS: dict[str, TaskSpec] = {
    "span": TaskSpec(
        "span", True, False, False, "entities", "el", "link_f1_given_gold", "RelikReaderSpanModel", True, _span_loss
    ),
    "triplet": TaskSpec(
        "triplet", False, True, True, "relations", "re", "triplet_f1", "RelikReaderREModel", True, _triplet_loss
    ),
    "typed": TaskSpec(
        "typed", True, True, True, "entities", "re", "triplet_f1", "RelikReaderREModel", True, _typed_loss, typed=True
    ),
    "cie": TaskSpec("cie", True, True, True, "entities", "re", "triplet_f1", "RelikJaxCIEModel", False, _cie_loss),
}
ALIASES = {"el": "span", "re": "triplet", "typed_triplet": "typed"}
TASKS = tuple(SPECS)
RELATION_TASKS = frozenset(name for name, s in SPECS.items() if s.relations)


def task_name(name: str) -> str:
    """The canonical task name (`el` → `span`, `re` → `triplet`); `ConfigError` for an unknown one."""
    name = ALIASES.get(name, name)
    if name not in SPECS:
        raise ConfigError(f"unknown reader task {name!r}; expected one of {TASKS} (or aliases el, re)")
    return name


def get_spec(name: str) -> TaskSpec:
    return SPECS[task_name(name)]


def spec_of_architecture(architecture: str, typed: bool = False) -> TaskSpec | None:
    """The spec of an `architectures` name (`typed`: the official RE model with `entity_type_loss`)."""
    return next((s for s in SPECS.values() if s.architecture == architecture and s.typed == typed), None)
