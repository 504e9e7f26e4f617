"""Fuzzing the model-file loader: whatever the bytes, `modelfile.load` returns a validated model
or raises one `InputError` line, never another exception, and never allocates what a header
merely claims (`numerics.modelfile`)."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from attnverify.numerics import modelfile
from attnverify.numerics.model import Params
from attnverify.numerics.tokenize import builtin_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

SPEC = ModelSpec(max_len=6, d_embed=4, d_att=2, d_out=3, heads=2, vocab_size=12)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


def params(spec: ModelSpec = SPEC) -> Params:
    rng = np.random.default_rng(0)
    return Params(**{name: rng.uniform(-0.1, 0.1, shape) for name, shape in modelfile.expected_shapes(spec).items()})


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    modelfile.save(path, SPEC, params(), builtin_vocab(SPEC.vocab_size))
    return path.read_bytes()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def archive(content: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in content.items():
            out.writestr(name, data)
    return buffer.getvalue()


def load_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    return modelfile.load(path)


def npy_header(shape, descr="<f8", fortran=False) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)}, }}"
    header += " " * (118 - len(header) % 128) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def loads_or_refuses(tmp_path: Path, data: bytes) -> None:
    try:
        loaded = load_bytes(tmp_path, data)
    except InputError as err:
        assert "\n" not in str(err) and str(err)
    else:  # accepted: then it is a whole, finite model of its spec
        for name, shape in modelfile.expected_shapes(loaded.spec).items():
            array = getattr(loaded.params, name)
            assert array.shape == shape and np.all(np.isfinite(array))
        assert len(loaded.vocab) == loaded.spec.vocab_size


def test_a_valid_file_round_trips(tmp_path, valid):
    loaded = load_bytes(tmp_path, valid)
    assert loaded.spec == SPEC and loaded.vocab == builtin_vocab(SPEC.vocab_size)
    for name in modelfile.expected_shapes(SPEC):
        np.testing.assert_array_equal(getattr(loaded.params, name), getattr(params(), name))


def test_fortran_order_and_float32_members_load_as_their_values(tmp_path, valid):
    content = members(valid)
    w_q = params().W_q
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(w_q.astype(np.float32)))
    content["W_q.npy"] = buffer.getvalue()
    loaded = load_bytes(tmp_path, archive(content))
    np.testing.assert_array_equal(loaded.params.W_q, w_q.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("byte", [b" ", b"\t", b"\xff"])
@pytest.mark.parametrize("member", ["W_v.npy", "spec.npy"])
def test_a_damaged_npy_header_is_one_line(tmp_path, valid, member, byte):
    # Can fail: the header's opening brace replaced, NumPy's header parser raised tokenize.TokenError,
    # which the loader did not catch (a traceback and exit code 1 from every command reading --model).
    content = members(valid)
    header = content[member]
    content[member] = header[:10] + byte + header[11:]
    with pytest.raises(InputError, match="not a readable .npz model file"):
        load_bytes(tmp_path, archive(content))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_flipped_bytes(tmp_path, valid, flips):
    data = bytearray(valid)
    for position, value in flips:
        data[position % len(data)] = value
    loads_or_refuses(tmp_path, bytes(data))


@FUZZ
@given(st.integers(0, 10**6))
def test_fuzz_truncated(tmp_path, valid, length):
    loads_or_refuses(tmp_path, valid[: length % len(valid)])


@FUZZ
@given(st.sampled_from(["W_q.npy", "spec.npy", "vocab.npy", "embedding.npy"]), st.binary(max_size=300))
def test_fuzz_a_member_with_arbitrary_bytes(tmp_path, valid, member, payload):
    # A well-formed archive whose member is garbage, or a real header followed by garbage.
    content = members(valid)
    for data in (payload, content[member][:128] + payload):
        loads_or_refuses(tmp_path, archive({**content, member: data}))


@FUZZ
@given(st.sampled_from(["W_q.npy", "vocab.npy", "spec.npy"]),
       st.lists(st.integers(-(2**40), 2**62), max_size=4),
       st.sampled_from(["<f8", "<f4", "<i8", "|b1", "<U5", "|O", "<c16", "<U0", ">f8"]), st.booleans())
def test_fuzz_npy_headers(tmp_path, valid, member, shape, descr, fortran):
    content = members(valid)
    loads_or_refuses(tmp_path, archive({**content, member: npy_header(shape, descr, fortran) + b"\0" * 64}))


@FUZZ
@given(st.dictionaries(st.sampled_from(["max_len", "d_embed", "vocab_size", "heads", "scorer", "biases", "x"]),
                       st.integers(-5, 10**13) | st.booleans() | st.text(max_size=5), max_size=3))
def test_fuzz_stored_spec(tmp_path, valid, changes):
    content = members(valid)
    spec_text = json.dumps({**json.loads(SPEC.to_json()), **changes})
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(spec_text))
    loads_or_refuses(tmp_path, archive({**content, "spec.npy": buffer.getvalue()}))


@pytest.mark.parametrize("change, message", [
    ({"W_q.npy": npy_header((10**11, 1000)) + b"\0" * 64}, "W_q has shape (100000000000, 1000)"),
    ({"notes.txt": b"hello"}, "member 'notes.txt' is not a .npy array"),
    ({"extra.npy": npy_header((2,)) + b"\0" * 16}, "unknown array 'extra'"),
    ({"W_k.npy": npy_header((2, 2, 4), "|O") + b"\0" * 64}, "W_k is not a float array"),
    ({"W_k.npy": npy_header((2, 2, 4), "<i8") + b"\0" * 64}, "W_k is not a float array"),
    ({"W_k.npy": npy_header((2, 2, 4)) + b"\0" * 10}, "W_k is truncated (10 of 128 bytes)"),
])
def test_crafted_members_are_refused_before_reading(tmp_path, valid, change, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_bytes(tmp_path, archive({**members(valid), **change}))


# A huge vocabulary needs huge arrays. max_len changes no stored shape: only one document's
# activations show it (it once reached the tokenizer as a list of 10**30 paddings: OverflowError).
@pytest.mark.parametrize("change", [{"vocab_size": 10**13}, {"max_len": 10**30}])
def test_a_spec_claiming_huge_sizes_is_refused_by_their_memory(tmp_path, valid, change):
    content = members(valid)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(SPEC.replace(**change).to_json()))
    with pytest.raises(InputError, match="the model needs at least .* of memory"):
        load_bytes(tmp_path, archive({**content, "spec.npy": buffer.getvalue()}))


@pytest.mark.parametrize("vocab, message", [
    (["zq", "qz", "zq"], "'zq' appears twice \\(entries 9 and 11\\)"),
    (["zq", "Qz"], "entry 11 'Qz' can never match"),
    (["don't"], "entry 11 \"don't\" can never match"),
    (["UNK"], "'UNK' \\(entry 11\\) is reserved"),
])
def test_a_stored_vocabulary_must_be_matchable_and_distinct(tmp_path, valid, vocab, message):
    content = members(valid)
    words = builtin_vocab(SPEC.vocab_size)
    words = words[: SPEC.vocab_size - len(vocab)] + vocab
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(words, dtype=str))
    with pytest.raises(InputError, match=message):
        load_bytes(tmp_path, archive({**content, "vocab.npy": buffer.getvalue()}))
