"""Hypothesis strategies for hostile input: nasty strings and whole protobuf messages built from their descriptors.

:func:`messages` walks a message's descriptor, so every field of every request of the API is
generated, and a field added to a ``.proto`` is fuzzed without touching this file. Strings mix
hostile text (path tricks, control characters, unicode, huge values) with ``known`` values (the
ids of a model that exists), so some requests get past validation and reach the deeper code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# A name no legitimate file has: a path trick that escaped the model cache would carry it.
ESCAPE_MARKER = "fuzzescape"

PATH_TRICKS: Sequence[str] = (
    "..",
    ".",
    "/",
    "\\",
    "../",
    "..\\",
    f"../../{ESCAPE_MARKER}",
    f"..\\..\\{ESCAPE_MARKER}",
    f"/tmp/{ESCAPE_MARKER}",
    f"/etc/{ESCAPE_MARKER}",
    f"C:\\{ESCAPE_MARKER}",
    f"C:/{ESCAPE_MARKER}",
    f"a/../../{ESCAPE_MARKER}",
    f"%2e%2e%2f{ESCAPE_MARKER}",
    f"..%00{ESCAPE_MARKER}",
    f"{ESCAPE_MARKER}\x00.zip",
    "~",
    f"~/{ESCAPE_MARKER}",
    "$HOME",
    "#",
    "guest#9999#",
    "*",
    "%",
    "_",
    "' OR '1'='1",
    '"; DROP TABLE t_registry_party_model; --',
    "{}",
    "[]",
    "null",
    "NaN",
    "-1",
    "0",
    "9" * 40,
    "-9223372036854775809",
    " ",
    "\t",
    "\n",
    "\x7f",
    "\u202e",
    "\ufeff",
    "\u0000",
    "\U0001d523\U0001d51e\U0001d531\U0001d522",  # mathematical fraktur "fate"
    "模型",
    "🤖" * 10,
)


def _huge(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Long strings built by repetition: cheap to generate, up to about 300 k characters."""
    return st.builds(lambda piece, n: piece * n, alphabet, st.sampled_from([256, 4096, 70_000]))


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each drawn with its weight (hypothesis's ``one_of`` favours its first branches);
    hypothesis also favours the first choice here, so the common case comes first."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        ticket = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if ticket < weight:
                return draw(strategy)
            ticket -= weight
        raise AssertionError("the weights add up to total")  # pragma: no cover

    return pick()


def nasty_text(known: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Strings a hostile or careless user sends; with ``known``, half the time a value that names a real
    thing (alone or with a path trick appended), so whole requests often get past the first check."""
    hostile = st.one_of(
        st.sampled_from(PATH_TRICKS),
        st.text(max_size=40),
        st.text(st.characters(max_codepoint=0x1F), max_size=8),
        _huge(st.sampled_from(["a", "../", "\x00", "é", "😀", "/"])),
        st.just(""),
    )
    if not known:
        return hostile
    names = st.sampled_from(list(known))
    tricked = st.builds(lambda a, b: a + b, names, st.sampled_from(PATH_TRICKS))
    return _weighted((5, names), (1, tricked), (4, hostile))


_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_BOUNDS[field.type]
    return st.one_of(st.sampled_from([low, high, 0, -1, 1, 2, 3]), st.integers(low, high))


def _scalar(field: FieldDescriptor, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"PK\x03\x04" + b"\xff" * 60))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    return _integers(field)


def messages(descriptor: Descriptor, text: st.SearchStrategy[str], depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of type ``descriptor`` with any subset of its fields set to hostile values."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)
    oneofs = {field.name for oneof in descriptor.oneofs for field in oneof.fields}
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field(field, text, depth)
        if value is not None:
            parts[field.name] = _weighted((5, value), (1, st.none()))  # None: left unset (a missing field)
    oneof_choice = st.sampled_from([None, *sorted(oneofs)]) if oneofs else st.just(None)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = draw(oneof_choice)
        for name, strategy in parts.items():
            if name in oneofs and name != chosen:
                continue
            value = draw(strategy)
            if value is None:
                continue
            _assign(message, descriptor.fields_by_name[name], value)
        return message

    return build()


def _field(field: FieldDescriptor, text: st.SearchStrategy[str], depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = field.message_type.fields_by_name["key"]
        value = field.message_type.fields_by_name["value"]
        values = _single(value, text, depth + 1)
        if values is None:
            return None
        return st.dictionaries(_scalar(key, text), values, max_size=3)
    single = _single(field, text, depth)
    if single is None:
        return None
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def _single(field: FieldDescriptor, text: st.SearchStrategy[str], depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is None:
        return _scalar(field, text)
    if depth >= 3:
        return None
    return messages(field.message_type, text, depth + 1)


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target = getattr(message, field.name)
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)
