"""The event contract: immutable domain events, their identity, and their canonical encoding.

Pure domain code: nothing here touches the database or reads the clock.

- A ``DomainEvent`` is a frozen, keyword-only dataclass. Its ``event_id`` is
  generated inside the object when it is constructed (the seed's frozen rule) and
  storage never changes it. An *originating* event (one that enters from the
  outside world: a strategy's signal, a deposit) draws a random ``uuid4`` at
  that edge. An event *derived* from another one (a handler's output) is built
  with ``derived_from(cause, step)`` and gets ``uuid5(cause.event_id, step)``, so
  a handler re-run after a crash re-creates the same ids and the re-append is an
  idempotent no-op.
- ``occurred_at`` is the event time, carried as data (timezone-aware, UTC).
  ``causation_id`` is the event that caused this one; ``correlation_id`` the
  first event of the chain (an originating event correlates with itself).
- Encoding is canonical: payload keys sorted, ``Decimal`` as plain strings
  without exponent or trailing fractional zeros, timestamps ISO-8601 UTC with
  microseconds and ``Z``, dates ISO-8601, enums by value, tuples as lists. Decoding a stored row
  gives back an equal object.
- An ``EventRegistry`` maps stored ``type`` names to classes. An unknown type,
  or a payload that does not fit its class, raises ``UndecodableEvent`` naming
  the event id — an event is never skipped silently.
- Upcasting: a class declares ``schema_version``; every stored event records the
  version it was written with (metadata ``event_schema``). To change a payload
  layout, bump ``schema_version`` and register an upcaster with
  ``registry.upcaster("TypeName", from_version)`` that turns a version-n payload
  into a version-n+1 payload; decoding applies the chain.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4, uuid5

import msgspec

from .errors import FinamError, InvalidArgument
from .persistence import JSON_DECODER, NewEvent, StoredEvent, text_problem

#: Metadata keys every stored domain event carries.
CAUSATION_ID = "causation_id"
CORRELATION_ID = "correlation_id"
EVENT_SCHEMA = "event_schema"

ENVELOPE_FIELDS = frozenset({"event_id", "causation_id", "correlation_id"})


class UndecodableEvent(FinamError):
    """FC006 (raised by the Python layer): a stored event does not decode into its class.

    Raised for an unknown type, a payload that does not fit its class, or a
    schema version no upcaster bridges. ``event_id`` names the stored event.
    """

    sqlstate = "FC006"

    def __init__(self, message: str, *, event_id: UUID | None = None, type_name: str | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.type_name = type_name


class UnknownEventType(UndecodableEvent):
    """FC006: no class is registered for a stored event's ``type``."""


# -- canonical values -------------------------------------------------------------

def canonical_decimal(value: Decimal) -> str:
    """Plain notation, no exponent, no trailing fractional zeros: Decimal('1.50') -> '1.5', 1E+2 -> '100'."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def canonical_time(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds and 'Z': 2026-11-24T09:30:00.000000Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_value(value: Any) -> Any:
    """The JSON-ready canonical form of a domain value (recursively for containers)."""
    if isinstance(value, enum.Enum):
        return canonical_value(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, Decimal):
        return canonical_decimal(value)
    if isinstance(value, datetime):
        return canonical_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [canonical_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): canonical_value(item) for key, item in sorted(value.items())}
    raise TypeError(f"{type(value).__name__} has no canonical encoding")


# -- field types: checking a constructed value, parsing a stored one ----------------
#
# Each annotation is compiled once into a checker (constructed value -> normalized
# value) and a parser (canonical JSON value -> domain value); both raise ValueError
# when the value does not fit. Compiling keeps decoding fast on replay.

Convert = Callable[[Any], Any]


def _optional_inner(annotation: Any) -> Any | None:
    """X for ``X | None`` / ``Optional[X]``, else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1 and len(typing.get_args(annotation)) == 2:
            return arguments[0]
    return None


#: Decimal fields lie within 1E-100 .. 1E+100 in magnitude (or are 0): the canonical plain notation of
#: anything beyond would be absurdly long (1E+999999999 is a gigabyte of zeros).
DECIMAL_EXPONENT_LIMIT = 100
#: Integer fields fit PostgreSQL's bigint, as every client can read them.
INT_RANGE = (-(2 ** 63), 2 ** 63 - 1)


def _bounded_decimal(value: Decimal) -> Decimal:
    if not -DECIMAL_EXPONENT_LIMIT <= value.adjusted() <= DECIMAL_EXPONENT_LIMIT:
        raise ValueError(f"{value!s:.40} is out of range (magnitude 1E-{DECIMAL_EXPONENT_LIMIT} .. "
                         f"1E+{DECIMAL_EXPONENT_LIMIT}, or 0 without such an exponent)")
    return value


def _check_decimal(value: Any) -> Decimal:
    if value.__class__ is not Decimal or not value.is_finite():
        raise ValueError(f"expected a finite Decimal, got {value!r:.60}")
    return _bounded_decimal(value)


def _check_datetime(value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _check_date(value: Any) -> date:
    if value.__class__ is not date:
        raise ValueError(f"expected a date, got {value!r}")
    return value


def _check_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an int, got {value!r:.60}")
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ValueError(f"an int of {value.bit_length()} bits is outside the 64-bit integer range")
    return value


def _check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected str, got {value!r:.60}")
    if (not value.isascii() or "\x00" in value) and (problem := text_problem(value)) is not None:
        raise ValueError(f"{value!r:.60} {problem}")
    return value


def _check_instance(cls: type) -> Convert:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise ValueError(f"expected {cls.__name__}, got {value!r:.60}")
        return value
    return check


_convert = msgspec.convert
_struct_dict = msgspec.structs.asdict


def _parse_decimal(raw: Any) -> Decimal:
    if raw.__class__ is not str:
        raise ValueError(f"expected a decimal string, got {raw!r}")
    return _parse_decimal_text(raw)


def _parse_decimal_text(raw: str) -> Decimal:
    """_parse_decimal of a value known to be a str (decode_json's msgspec Struct checked it)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a decimal number") from None
    if value.is_finite() and -DECIMAL_EXPONENT_LIMIT <= value.adjusted() <= DECIMAL_EXPONENT_LIMIT:
        return value  # the replay path: _bounded_decimal's test, inlined
    if not value.is_finite():
        raise ValueError(f"{raw!r} is not a finite number")
    return _bounded_decimal(value)


def _parse_datetime(raw: Any) -> datetime:
    if raw.__class__ is not str:
        raise ValueError(f"expected an ISO-8601 string, got {raw!r}")
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError(f"{raw!r} has no timezone")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _parse_date(raw: Any) -> date:
    if raw.__class__ is not str:
        raise ValueError(f"expected an ISO-8601 date string, got {raw!r}")
    return date.fromisoformat(raw)


def _parse_uuid(raw: Any) -> UUID:
    if raw.__class__ is not str:
        raise ValueError(f"expected a UUID string, got {raw!r:.60}")
    try:  # msgspec's C parser takes the canonical forms (36 characters, or 32 hex digits) 4x faster ...
        return _convert(raw, UUID)
    except msgspec.ValidationError:
        return UUID(raw)  # ... uuid.UUID the rest it accepts ({braces}, urn:uuid:) or says what is wrong


def _parse_enum(cls: type[enum.Enum]) -> Convert:
    def parse(raw: Any) -> enum.Enum:
        return cls(raw)
    return parse


def _optional(convert: Convert) -> Convert:
    def optional(value: Any) -> Any:
        return None if value is None else convert(value)
    return optional


def _tuple_of(convert: Convert, container: type) -> Convert:
    def items(value: Any) -> tuple:
        if not isinstance(value, container):
            raise ValueError(f"expected a {container.__name__}, got {type(value).__name__}")
        return tuple(convert(item) for item in value)
    return items


def compile_checker(annotation: Any) -> Convert:
    """The checker of a field annotation: constructed value -> value normalized (datetimes to UTC)."""
    inner = _optional_inner(annotation)
    if inner is not None:
        return _optional(compile_checker(inner))
    if typing.get_origin(annotation) is tuple:
        item_type, ellipsis = typing.get_args(annotation)
        if ellipsis is not Ellipsis:
            raise TypeError(f"unsupported field type {annotation!r}: use tuple[X, ...]")
        return _tuple_of(compile_checker(item_type), tuple)
    simple = {Decimal: _check_decimal, datetime: _check_datetime, date: _check_date, int: _check_int,
              str: _check_str}.get(annotation)
    if simple is not None:
        return simple
    if annotation in (bool, UUID) or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return _check_instance(annotation)
    raise TypeError(f"unsupported field type {annotation!r}")


def compile_parser(annotation: Any) -> Convert:
    """The parser of a field annotation: canonical JSON value -> domain value."""
    inner = _optional_inner(annotation)
    if inner is not None:
        return _optional(compile_parser(inner))
    if typing.get_origin(annotation) is tuple:
        return _tuple_of(compile_parser(typing.get_args(annotation)[0]), list)
    parser = {Decimal: _parse_decimal, datetime: _parse_datetime, date: _parse_date, UUID: _parse_uuid}.get(annotation)
    if parser is not None:
        return parser
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _parse_enum(annotation)
    if annotation is str:
        return _check_instance(str)  # stored text cannot hold what _check_str refuses: spare the scan on replay
    return compile_checker(annotation)


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """How one payload field is checked on construction and parsed on decoding."""

    name: str
    check: Convert
    parse: Convert


# -- the event base ---------------------------------------------------------------

E = TypeVar("E", bound="DomainEvent")


class _EventClass(type):
    """Metaclass of DomainEvent: arguments that do not fit the constructor (a missing field, an unknown
    one, a positional value) are an InvalidArgument (FC003) like any other invalid field, not a TypeError."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except TypeError as error:
            if error.__traceback__ is not None and error.__traceback__.tb_next is not None:
                raise  # raised inside __init__/validate (a bug, not the caller's arguments)
            message = str(error).replace(f"{cls.__qualname__}.__init__() ", "").replace("__init__() ", "")
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            raise InvalidArgument(f"invalid argument: {cls.__name__}: {message} (keyword-only fields: {fields})") \
                from None


@dataclass(frozen=True, kw_only=True)
class DomainEvent(metaclass=_EventClass):
    """An immutable fact. ``event_id`` is fixed at construction; storage never changes it.

    Subclasses are frozen keyword-only dataclasses whose fields (other than the
    envelope: ``event_id``, ``causation_id``, ``correlation_id``) form the
    payload. Field types: Decimal, str, int, bool, UUID, datetime, date, str-valued
    enums, ``tuple[X, ...]`` and ``X | None``. Override ``validate()`` for
    domain rules; it raises InvalidArgument (FC003).

    Construction raises InvalidArgument (FC003), never TypeError, for anything
    that does not fit: a missing, unknown or positional field, a value of the
    wrong type, an envelope id that is not a UUID, text PostgreSQL cannot store
    (``\\u0000``, lone surrogates), a Decimal beyond 1E±100 or an int beyond 64 bits.
    """

    type_name: ClassVar[str] = "DomainEvent"
    schema_version: ClassVar[int] = 1

    occurred_at: datetime
    event_id: UUID = field(default_factory=uuid4)
    causation_id: UUID | None = None
    correlation_id: UUID | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__

    def __post_init__(self) -> None:
        for name in ("event_id", "causation_id", "correlation_id"):
            value = getattr(self, name)
            if not (value.__class__ is UUID or isinstance(value, UUID) or (value is None and name != "event_id")):
                raise InvalidArgument(f"invalid argument: {self.type_name}.{name}: expected a UUID, got {value!r:.60}")
        for codec in _field_codecs(type(self)):
            value = getattr(self, codec.name)
            try:
                checked = codec.check(value)
            except ValueError as error:
                raise InvalidArgument(f"invalid argument: {self.type_name}.{codec.name}: {error}") from None
            if checked is not value:
                object.__setattr__(self, codec.name, checked)
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.event_id)
        self.validate()

    def validate(self) -> None:
        """Domain rules of this event type (InvalidArgument when broken); none by default."""

    @classmethod
    def derived_from(cls: type[E], cause: DomainEvent, step: str, **fields: Any) -> E:
        """An event caused by ``cause``: id ``uuid5(cause.event_id, step)``, caused by it, in its correlation.

        ``step`` names the reaction (unique per output of one cause), so re-running
        the reaction re-creates the same id. ``occurred_at`` defaults to the cause's.
        """
        if not step:
            raise InvalidArgument("invalid argument: a derived event needs a non-empty step name")
        fields.setdefault("occurred_at", cause.occurred_at)
        return cls(event_id=uuid5(cause.event_id, f"{cls.type_name}:{step}"), causation_id=cause.event_id,
                   correlation_id=cause.correlation_id, **fields)

    def payload(self) -> dict[str, Any]:
        """The canonical JSON payload: every non-envelope field, keys sorted."""
        return {codec.name: canonical_value(getattr(self, codec.name)) for codec in _field_codecs(type(self))}

    def metadata(self) -> dict[str, Any]:
        """Causation, correlation and the payload's schema version."""
        return {CAUSATION_ID: None if self.causation_id is None else str(self.causation_id),
                CORRELATION_ID: str(self.correlation_id), EVENT_SCHEMA: self.schema_version}


_FIELD_CODECS: dict[type, tuple[FieldCodec, ...]] = {}
_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_codecs(cls: type[DomainEvent]) -> tuple[FieldCodec, ...]:
    """The payload fields of an event class, sorted by name, with their compiled codecs (cached)."""
    codecs = _FIELD_CODECS.get(cls)
    if codecs is None:
        hints = typing.get_type_hints(cls)
        names = sorted(f.name for f in dataclasses.fields(cls) if f.name not in ENVELOPE_FIELDS)
        codecs = tuple(FieldCodec(name, compile_checker(hints[name]), compile_parser(hints[name])) for name in names)
        _FIELD_CODECS[cls] = codecs
        _FIELD_NAMES[cls] = frozenset(names)
    return codecs


# -- recorded events and the registry ---------------------------------------------------

class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """A decoded, committed event and where it is stored: what handlers and folds receive.

    Immutable; a msgspec Struct (like ``StoredEvent``) as replay builds one per event.
    """

    event: DomainEvent
    stream: str
    version: int
    position: int
    recorded_at: datetime


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


# -- decoding straight from the stored JSON text (the replay path) -----------------------
#
# A payload's JSON is read into a msgspec Struct of its class's fields (compiled at registration):
# msgspec checks the key set and each value's JSON type in C, so str, int and bool fields need no
# Python call; Decimal, datetime, date, UUID, enum and tuple fields arrive as their JSON value and
# go through the same parser as in decode_event. Whatever the Struct refuses, a schema version
# that needs upcasting, and any error, take decode_event's own path: the same event or error.

_INT64 = typing.Annotated[int, msgspec.Meta(ge=INT_RANGE[0], le=INT_RANGE[1])]


def _wire_type(annotation: Any) -> tuple[Any, bool]:
    """(msgspec type of the field's canonical JSON value, whether the field's parser must still run)."""
    inner = _optional_inner(annotation)
    if inner is not None:
        wire, needs_parser = _wire_type(inner)
        return typing.Optional[wire], needs_parser
    if typing.get_origin(annotation) is tuple:
        return list[_wire_type(typing.get_args(annotation)[0])[0]], True
    if annotation is str or annotation is bool:
        return annotation, False  # decode_event's parser is an isinstance check: msgspec's type check
    if annotation is int:
        return _INT64, False  # _check_int: an int (not a bool) within 64 bits
    return str, True  # Decimal, datetime, date, UUID, enum: a string, then their parser


#: The metadata keys decoding reads (others are ignored, as decode_event ignores them). A UUID is
#: read in the forms msgspec parses (36 characters, or 32 hex digits), as _parse_uuid's first try.
_WireMetadata = msgspec.defstruct("_WireMetadata", [(CAUSATION_ID, UUID | None, None),
                                                    (CORRELATION_ID, UUID | None, None),
                                                    (EVENT_SCHEMA, int, 1)], gc=False)
_METADATA_DECODER = msgspec.json.Decoder(_WireMetadata)
_new_object, _set_attribute = object.__new__, object.__setattr__


_WIRE_PARSERS = {_parse_decimal: _parse_decimal_text}
_JSON_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError, InvalidArgument)


@dataclass(frozen=True, slots=True)
class _Decoding:
    """What decoding a stored event of one registered class needs, compiled at registration."""

    cls: type[DomainEvent]
    field_names: frozenset[str]
    parsers: tuple[tuple[str, Convert], ...]  # (payload field, its parser), sorted by field
    schema_version: int
    wire: msgspec.json.Decoder                # payload JSON -> Struct of the fields (all required, no others)
    wire_parsers: tuple[tuple[str, Convert], ...]  # the fields whose parser still runs on the Struct's value

    @classmethod
    def of(cls, event_class: type[DomainEvent]) -> _Decoding:
        codecs = _field_codecs(event_class)
        hints = typing.get_type_hints(event_class)
        wire_fields, wire_parsers = [], []
        for codec in codecs:
            wire_type, needs_parser = _wire_type(hints[codec.name])
            wire_fields.append((codec.name, wire_type))
            if needs_parser:  # msgspec checked it is a string (or None): a decimal's need not check it again
                wire_parsers.append((codec.name, _WIRE_PARSERS.get(codec.parse, codec.parse)))
        wire = msgspec.defstruct(f"{event_class.__name__}Payload", wire_fields, forbid_unknown_fields=True,
                                 gc=False)
        return cls(event_class, _FIELD_NAMES[event_class], tuple((codec.name, codec.parse) for codec in codecs),
                   event_class.schema_version, msgspec.json.Decoder(wire), tuple(wire_parsers))


class EventRegistry:
    """Maps stored ``type`` names to event classes, and encodes/decodes events canonically."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._decodings: dict[str, _Decoding] = {}
        self._last_correlation: tuple[Any, UUID | None] = (None, None)  # (text, its UUID), one tuple: thread-safe
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[E]) -> type[E]:
        """Class decorator: ``cls.type_name`` now decodes to ``cls``."""
        existing = self._classes.get(cls.type_name)
        if existing is not None and existing is not cls:
            raise ValueError(f"event type {cls.type_name!r} is already registered to {existing.__qualname__}")
        decoding = _Decoding.of(cls)  # compile now: a bad field type fails at import, not at decode
        self._classes[cls.type_name] = cls
        self._decodings[cls.type_name] = decoding
        return cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: the function turns a ``from_version`` payload of ``type_name`` into a ``from_version + 1`` one."""
        def register(function: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = function
            return function
        return register

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._classes

    def types(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._classes)

    def encode(self, event: DomainEvent) -> NewEvent:
        """The record to append: same id, type name, canonical payload and metadata."""
        if not isinstance(event, DomainEvent):
            raise InvalidArgument(f"invalid argument: expected a DomainEvent, got {type(event).__name__} "
                                  f"{event!r:.60}")
        if self._classes.get(event.type_name) is not type(event):
            raise InvalidArgument(f"invalid argument: event type {event.type_name!r} is not registered")
        return NewEvent(event.event_id, event.type_name, event.payload(), event.metadata())

    def decode(self, stored: StoredEvent) -> RecordedEvent:
        """The domain event of a stored row; UndecodableEvent (naming its id) when it does not fit."""
        return RecordedEvent(self.decode_event(stored.id, stored.type, stored.payload, stored.metadata),
                             stored.stream, stored.version, stored.position, stored.created_at)

    def decode_json(self, event_id: UUID, type_name: str, payload: str | bytes, metadata: str | bytes) -> DomainEvent:
        """:meth:`decode_event` for a payload and metadata still in their stored JSON text: the same
        event, or the same error (UndecodableEvent naming the id). The replay path: the JSON is read
        straight into the event's fields, without building the payload's dict first."""
        decoding = self._decodings.get(type_name)
        if decoding is not None:
            try:
                fields = decoding.wire.decode(payload)
                envelope = _METADATA_DECODER.decode(metadata)
                if envelope.event_schema == decoding.schema_version:
                    values = _struct_dict(fields)
                    for name, parse in decoding.wire_parsers:
                        values[name] = parse(values[name])
                    values["event_id"] = event_id
                    values["causation_id"] = envelope.causation_id
                    correlation = envelope.correlation_id
                    values["correlation_id"] = event_id if correlation is None else correlation
                    event = _new_object(decoding.cls)
                    _set_attribute(event, "__dict__", values)  # the fields, as decode_event fills them
                    event.validate()
                    return event
            except _JSON_ERRORS:
                pass  # decode_event says what does not fit
        objects = []
        for part, text in (("payload", payload), ("metadata", metadata)):
            try:
                value = JSON_DECODER.decode(text)
            except msgspec.DecodeError as error:
                value = error
            if not isinstance(value, dict):
                problem = f"not valid JSON ({value})" if isinstance(value, Exception) else "not a JSON object"
                raise UndecodableEvent(f"event {event_id} ({type_name}) does not decode: {part} is {problem}",
                                       event_id=event_id, type_name=type_name)
            objects.append(value)
        return self.decode_event(event_id, type_name, *objects)

    def decode_event(self, event_id: UUID, type_name: str, payload: Mapping[str, Any],
                     metadata: Mapping[str, Any]) -> DomainEvent:
        """The domain event for a stored id, type, payload and metadata.

        The replay hot path: the field parsers were compiled at registration, and the
        object is built without re-running the construction checks they already made.
        """
        decoding = self._decodings.get(type_name)
        if decoding is None:
            raise UnknownEventType(f"event {event_id}: unknown event type {type_name!r} "
                                   f"(registered: {', '.join(self.types())})", event_id=event_id, type_name=type_name)
        cls = decoding.cls
        try:
            stored_version = metadata.get(EVENT_SCHEMA, 1)
            current = stored_version.__class__ is int and stored_version == cls.schema_version
            body = payload if current else self._upcast(cls, dict(payload), stored_version)
            if body.keys() != decoding.field_names:
                expected = decoding.field_names
                missing, extra = sorted(expected - body.keys()), sorted(body.keys() - expected)
                raise ValueError(f"payload does not fit: missing {missing}, unexpected {extra}")
            # The parsers type-check every field: fill the frozen object without re-running the
            # construction checks, then apply the class's own rules.
            event = object.__new__(cls)
            values = event.__dict__
            name = ""
            try:
                for name, parse in decoding.parsers:
                    values[name] = parse(body[name])
            except (ValueError, TypeError) as error:
                raise ValueError(f"field {name!r}: {error}") from None
            causation, correlation = metadata.get(CAUSATION_ID), metadata.get(CORRELATION_ID)
            values["event_id"] = event_id
            try:
                values["causation_id"] = None if causation is None else _parse_uuid(causation)
                if correlation is None:
                    values["correlation_id"] = event_id
                else:  # a chain's events share it, and a stream holds them close together: reuse the last one
                    last = self._last_correlation
                    if correlation != last[0]:
                        last = self._last_correlation = (correlation, _parse_uuid(correlation))
                    values["correlation_id"] = last[1]
            except (ValueError, TypeError) as error:
                raise ValueError(f"metadata: {error}") from None
            event.validate()
            return event
        except UndecodableEvent:
            raise
        except (ValueError, TypeError, InvalidArgument) as error:
            raise UndecodableEvent(f"event {event_id} ({type_name}) does not decode: {error}",
                                   event_id=event_id, type_name=type_name) from None

    def build(self, type_name: str, fields: Mapping[str, Any], *, event_id: UUID | None = None) -> DomainEvent:
        """An event of ``type_name`` from canonical field values given by a person or a file (a subset:
        absent fields take the class default). InvalidArgument (FC003) naming the field when one does not fit."""
        cls = self._classes.get(type_name)
        if cls is None:
            raise InvalidArgument(f"invalid argument: unknown event type {type_name!r}")
        codecs = {codec.name: codec for codec in _field_codecs(cls)}
        unknown = sorted(set(fields) - set(codecs))
        if unknown:
            raise InvalidArgument(f"invalid argument: {type_name} has no field {', '.join(unknown)} "
                                  f"(fields: {', '.join(sorted(codecs))})")
        values = {}
        for name, raw in fields.items():
            try:
                values[name] = codecs[name].parse(raw)
            except (ValueError, TypeError) as error:
                raise InvalidArgument(f"invalid argument: {type_name}.{name}: {error}") from None
        try:
            return cls(**values) if event_id is None else cls(event_id=event_id, **values)
        except TypeError as error:  # a required field is missing
            raise InvalidArgument(f"invalid argument: {type_name}: {error}") from None

    def _upcast(self, cls: type[DomainEvent], payload: dict[str, Any], stored_version: Any) -> dict[str, Any]:
        if isinstance(stored_version, bool) or not isinstance(stored_version, int) or stored_version < 1:
            raise ValueError(f"metadata {EVENT_SCHEMA} must be a positive integer, got {stored_version!r}")
        if stored_version > cls.schema_version:
            raise ValueError(f"written with schema {stored_version}, newer than this code's "
                             f"{cls.schema_version}: upgrade the reader")
        for version in range(stored_version, cls.schema_version):
            upcast = self._upcasters.get((cls.type_name, version))
            if upcast is None:
                raise ValueError(f"no upcaster from schema {version} to {version + 1}")
            payload = upcast(payload)
        return payload
