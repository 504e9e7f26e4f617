from pathlib import Path

import pytest

from attnverify.errors import InputError
from attnverify.spec import PAPER, SMALL, ModelSpec


def test_paper_defaults_match_theory_md():
    # Can fail: the sizes are read from the table in docs/theory.md §1; the switches are those its text
    # states (heads averaged, the raw logit of class 1 explained, no bias, the [CLS] query, no value map).
    table = (Path(__file__).resolve().parents[1] / "docs" / "theory.md").read_text()
    header = "| $T$ | $d_e$ | $d_{att}$ | $d_{out}$ | $K$ | $C$ | initialisation |"
    row = table.split(header, 1)[1].splitlines()[2]
    sizes = tuple(int(cell) for cell in row.split("|")[1:7])
    assert (PAPER.max_len, PAPER.d_embed, PAPER.d_att, PAPER.d_out, PAPER.heads, PAPER.classes) == sizes
    assert (PAPER.head_aggregation, PAPER.output_link, PAPER.explained_class, PAPER.biases, PAPER.query,
            PAPER.value_nonlinearity, PAPER.scorer, PAPER.scale_scores) == ("mean", "logit", 1, False, "cls", "none",
                                                                           "dot", True)


def test_json_round_trip():
    spec = SMALL.replace(output_link="sigmoid", biases=True)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.deviations() == {"output_link": "sigmoid", "biases": True}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_len": 1}, "max_len"),
        ({"heads": 0}, "heads"),
        ({"query": "last"}, "query"),
        ({"explained_class": 2}, "explained_class"),
    ],
)
def test_invalid_specs_raise_input_error(changes, message):
    with pytest.raises(InputError, match=message):
        PAPER.replace(**changes)


def test_from_json_rejects_unknown_and_mistyped_fields():
    with pytest.raises(InputError, match="unknown"):
        ModelSpec.from_dict({"colour": "red"})
    with pytest.raises(InputError, match="must be int"):
        ModelSpec.from_dict({"heads": "6"})
    with pytest.raises(InputError, match="JSON"):
        ModelSpec.from_json("{not json")
