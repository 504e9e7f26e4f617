"""The model spec: the single source of truth for sizes and modelling assumptions.

Every layer reads the model from here: `theory` builds the SymPy expression, `numerics`
builds the JAX model, `verification` decides which claims' hypotheses hold. The defaults
are the paper's (Lopardo, Precioso & Garreau 2024; docs/theory.md §1.2).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from attnverify.errors import InputError

#: Allowed values of each categorical switch (first entry = the paper's choice).
CHOICES: dict[str, tuple[str, ...]] = {
    "head_aggregation": ("mean", "sum"),
    "query": ("cls", "mean"),
    "value_nonlinearity": ("none", "tanh"),
    "output_link": ("logit", "sigmoid", "softmax"),
    "scorer": ("dot", "additive", "deep"),
}

#: One-line help per field, used by the CLI so flags and spec never drift apart.
HELP: dict[str, str] = {
    "max_len": "T, number of positions ([CLS] + words + UNK padding)",
    "d_embed": "d_e, embedding width",
    "d_att": "d_att, query/key width",
    "d_out": "d_out, value width",
    "heads": "K, number of heads",
    "classes": "C, number of classes",
    "vocab_size": "V, vocabulary size including [CLS] and UNK",
    "explained_class": "class whose output is explained (the paper: 1)",
    "scale_scores": "divide scores by sqrt(d_att) (dot scorer only; additive and deep ignore it)",
    "positional": "add the sinusoidal positional encoding",
    "head_aggregation": "combine heads by mean (paper) or sum",
    "query": "query from the [CLS] embedding (paper) or from the mean token embedding",
    "value_nonlinearity": "none (paper) or tanh applied to the values",
    "output_link": "explained output: raw class logit (paper), sigmoid of it, or softmax probability",
    "biases": "add biases to the query, key, value and classifier maps",
    "scorer": "score gamma_t: dot = <q, k_t> (paper), additive = v.tanh(q + k_t) (Bahdanau), "
    "deep = v.tanh(U tanh(q + k_t)) (Wen et al.'s MLP scorer)",
}


@dataclass(frozen=True)
class ModelSpec:
    """Sizes and assumption switches of the one-layer multi-head attention classifier.

    The explained output is
    ``f = link(agg_i W_l^(i) sum_t alpha_t^(i) v_t^(i))`` with
    ``alpha^(i) = softmax(gamma^(i))`` with the paper's scaled dot-product score
    ``gamma_t^(i) = <q^(i), k_t^(i)> / sqrt(d_att)`` (docs/theory.md §1.2), or, with `scorer`,
    Bahdanau's additive score ``sum_a v_a^(i) tanh(q_a^(i) + k_{t,a}^(i))`` or the deep (MLP)
    score ``sum_b v_b^(i) tanh(sum_a U_{b,a}^(i) tanh(q_a^(i) + k_{t,a}^(i)))`` (docs/theory.md §8.5).
    `scale_scores` applies to the dot scorer only.
    """

    max_len: int = 256
    d_embed: int = 128
    d_att: int = 64
    d_out: int = 64
    heads: int = 6
    classes: int = 2
    vocab_size: int = 1000
    explained_class: int = 1
    scale_scores: bool = True
    positional: bool = True
    head_aggregation: str = "mean"
    query: str = "cls"
    value_nonlinearity: str = "none"
    output_link: str = "logit"
    biases: bool = False
    scorer: str = "dot"

    def __post_init__(self) -> None:
        # Types first: a dataclass takes anything, and ModelSpec(scale_scores="no") would be a
        # scaled model ("no" is true) whose records say "no"; heads=2.0 a traceback from JAX.
        check_types({f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSpec)})
        for name in ("d_embed", "d_att", "d_out", "heads", "vocab_size"):
            if getattr(self, name) < 1:
                raise InputError(f"spec: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_len < 2:
            raise InputError(f"spec: max_len (T) must be >= 2 ([CLS] plus one word), got {self.max_len}")
        if self.classes < 2:
            raise InputError(f"spec: classes must be >= 2, got {self.classes}")
        if self.vocab_size < 2:
            raise InputError("spec: vocab_size must be >= 2 ([CLS] and UNK)")
        if not 0 <= self.explained_class < self.classes:
            raise InputError(
                f"spec: explained_class must be in 0..{self.classes - 1}, got {self.explained_class}"
            )
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"spec: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )

    # -- hypotheses -------------------------------------------------------------------
    def deviations(self) -> dict[str, Any]:
        """Switches that differ from the paper's model, as ``{name: value}``."""
        paper = ModelSpec()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in SWITCHES and getattr(self, f.name) != getattr(paper, f.name)
        }

    def satisfies(self, requires: dict[str, Any]) -> bool:
        """True when every ``{field: value}`` hypothesis holds for this spec. A hypothesis on
        a name that is no spec field is an `InputError` (`check_requires`)."""
        check_requires(requires)
        return all(getattr(self, k) == v for k, v in requires.items())

    # -- serialisation ------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        if not isinstance(text, str | bytes):
            raise InputError(f"spec: expected JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"spec: not valid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise InputError("spec: expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if not isinstance(data, dict):
            raise InputError(f"spec: expected a dict of fields, got {type(data).__name__}")
        refuse_unknown_fields(cls, data)
        check_types(data)
        return cls(**data)

    def replace(self, **changes: Any) -> ModelSpec:
        refuse_unknown_fields(type(self), changes)
        return dataclasses.replace(self, **changes)


def refuse_unknown_fields(cls: type, names: Iterable[Any]) -> None:
    """One-line `InputError` naming those of `names` that are no field of the spec class `cls`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(name) for name in set(names) - known)
    if unknown:
        raise InputError(f"spec: unknown field(s) {', '.join(unknown)} (fields: {', '.join(sorted(known))})")


def _is_a(kind: str, value: Any) -> bool:
    """Whether `value` has the spec field type `kind` (an annotation string: "bool", "int" or
    "str"); a bool is no int."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def check_types(data: Mapping[str, Any]) -> None:
    """One-line `InputError` for a spec field given a value of the wrong type (``heads="2"``,
    ``scale_scores="no"``: the dataclass would take them, and "no" is true)."""
    known = {f.name: f.type for f in dataclasses.fields(ModelSpec)}
    for name, value in data.items():
        if not _is_a(known[name], value):
            raise InputError(f"spec: field {name} must be {known[name]}, got {value!r}")


def check_requires(requires: Any) -> None:
    """One-line `InputError` unless `requires` maps spec field names to values (a claim's
    hypotheses, `verification.registry.Claim.requires`)."""
    if not isinstance(requires, Mapping):
        raise InputError(f"requires must be a dict of spec fields, got {type(requires).__name__}")
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    unknown = [k for k in requires if k not in names]
    if unknown:
        raise InputError(f"requires names {unknown[0]!r}, which is not a spec field (fields: {', '.join(names)})")
    kinds = {f.name: f.type for f in dataclasses.fields(ModelSpec)}  # annotations as strings
    for name, value in requires.items():  # a value no spec can take: its claim could never be judged
        if name in CHOICES:
            if value not in CHOICES[name]:
                raise InputError(f"requires {name}={value!r}, not one of {', '.join(CHOICES[name])}")
        elif kinds[name] in ("bool", "int") and not _is_a(kinds[name], value):
            wanted = "True or False" if kinds[name] == "bool" else "an integer"
            raise InputError(f"requires {name}={value!r}, not {wanted}")


#: The assumption switches (as opposed to sizes).
SWITCHES = (
    "scale_scores",
    "positional",
    "head_aggregation",
    "query",
    "value_nonlinearity",
    "output_link",
    "biases",
    "scorer",
)

#: The paper's model at its sizes.
PAPER = ModelSpec()

#: Small sizes for sweeps and tests (docs/theory.md §8.7: T = 6..32, d_e = 8..32).
SMALL = ModelSpec(max_len=16, d_embed=32, d_att=16, d_out=16, heads=8, vocab_size=64)
