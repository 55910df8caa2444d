"""The event contract: identity, canonical encoding, decoding through the real store, upcasting."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid4, uuid5

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finam_thin import InvalidArgument, NewEvent
from finam_thin.persistence import json_loads
from finam_thin.contract import (
    CAUSATION_ID,
    CORRELATION_ID,
    EVENT_SCHEMA,
    DomainEvent,
    EventRegistry,
    UndecodableEvent,
    UnknownEventType,
    canonical_decimal,
    canonical_time,
)
from finam_thin.events import (
    TRADING_EVENTS,
    CashDeposited,
    CashWithdrawn,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderAccepted,
    ClusterMapPublished,
    OrderCancelled,
    OrderDenied,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    SignalDenied,
    StrategySignalEvent,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
)

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def one_of_each() -> list[DomainEvent]:
    """One event of every registered trading type, optional fields set where they exist."""
    signal = StrategySignalEvent(occurred_at=T0, strategy="momentum", instrument="AAPL", side=Side.BUY,
                                 quantity=Decimal("10.5"), limit_price=Decimal("187.25"))
    return [
        PortfolioOpened(occurred_at=T0, base_currency="USD"),
        InstrumentRegistered(occurred_at=T0, instrument="AAPL", asset_class="equity", currency="USD"),
        InstrumentRegistered(occurred_at=T0, instrument="SX5E-C", asset_class="option", currency="EUR",
                             multiplier=Decimal(100)),
        CashDeposited(occurred_at=T0, currency="USD", amount=Decimal("100000.00")),
        CashWithdrawn(occurred_at=T0, currency="USD", amount=Decimal("0.01")),
        FxRateUpdated(occurred_at=T0, currency="EUR", rate=Decimal("1.0843")),
        MarkPriceUpdated(occurred_at=T0, instrument="AAPL", price=Decimal("-0.5")),
        signal,
        OrderRequested.derived_from(signal, "order", order_id="O-1", instrument="AAPL", side=Side.BUY,
                                    quantity=Decimal("10.5"), limit_price=Decimal("187.25"), strategy="momentum"),
        OrderDenied(occurred_at=T0, order_id="O-2", reason_codes=("MAX_POSITION", "DAILY_LOSS"), detail="limits"),
        OrderSubmitted(occurred_at=T0, order_id="O-1"),
        OrderRejected(occurred_at=T0, order_id="O-3", reason="venue closed"),
        OrderAccepted(occurred_at=T0, order_id="O-1", venue_order_id="V-77"),
        OrderPartiallyFilled(occurred_at=T0, order_id="O-1", fill_id="F-1", quantity=Decimal("4"),
                             price=Decimal("187.20"), fee=Decimal("0.35"), fee_currency="USD"),
        OrderFilled(occurred_at=T0, order_id="O-1", fill_id="F-2", quantity=Decimal("6.5"), price=Decimal("187.25")),
        OrderCancelled(occurred_at=T0, order_id="O-4", reason="user"),
        StrategySignalEvent(occurred_at=T0, strategy="breakout", instrument="SX5E-C", side=Side.SELL,
                            reference_price=Decimal("12.5"), stop_price=Decimal("14"), emergency_exit=True),
        TradingStateChanged(occurred_at=T0, state=TradingState.REDUCING, reason="DAILY_LOSS_CAP"),
        SignalDenied.derived_from(signal, "deny", signal_id=signal.event_id, reason_codes=("NO_PRICE",),
                                  risk_config_hash="ab" * 32),
        TradingDayStarted(occurred_at=T0, trading_day=date(2026, 11, 24), baseline_equity=Decimal("99875.5")),
        ClusterMapPublished(occurred_at=T0, map_version=1, instruments=("AAPL", "SX5E-C"), clusters=("c1", "c2")),
    ]


# -- identity ----------------------------------------------------------------------

def test_an_event_gets_its_id_at_construction_and_it_never_changes():
    first = CashDeposited(occurred_at=T0, currency="USD", amount=Decimal(1))
    second = CashDeposited(occurred_at=T0, currency="USD", amount=Decimal(1))
    assert isinstance(first.event_id, UUID) and first.event_id != second.event_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.event_id = uuid4()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.amount = Decimal(2)  # type: ignore[misc]
    assert first.causation_id is None and first.correlation_id == first.event_id
    assert TRADING_EVENTS.encode(first).id == first.event_id


def test_a_derived_event_id_comes_from_its_cause_and_step():
    signal = StrategySignalEvent(occurred_at=T0, strategy="s", instrument="AAPL", side=Side.SELL, quantity=Decimal(3))
    fields = dict(order_id="O-1", instrument="AAPL", side=Side.SELL, quantity=Decimal(3))
    order = OrderRequested.derived_from(signal, "order", **fields)
    again = OrderRequested.derived_from(signal, "order", **fields)
    other_step = OrderRequested.derived_from(signal, "hedge", **fields)
    assert order == again and order.event_id == again.event_id
    assert order.event_id == uuid5(signal.event_id, "OrderRequested:order")
    assert other_step.event_id != order.event_id
    assert order.causation_id == signal.event_id and order.correlation_id == signal.event_id
    assert order.occurred_at == signal.occurred_at
    # the chain keeps the first event's correlation
    denial = OrderDenied.derived_from(order, "risk", order_id="O-1", reason_codes=("MAX_POSITION",))
    assert denial.causation_id == order.event_id and denial.correlation_id == signal.event_id
    with pytest.raises(InvalidArgument):
        OrderDenied.derived_from(order, "", order_id="O-1", reason_codes=("X",))


def test_rerunning_a_handler_re_appends_the_same_ids_as_an_idempotent_no_op(store):
    signal = StrategySignalEvent(occurred_at=T0, strategy="s", instrument="AAPL", side=Side.BUY, quantity=Decimal(1))
    store.append("portfolio-ids", TRADING_EVENTS.encode(signal))

    def react(cause):  # a handler's output, rebuilt from the cause every time it runs
        return OrderRequested.derived_from(cause, "order", order_id=f"O-{cause.event_id}", instrument="AAPL",
                                           side=Side.BUY, quantity=Decimal(1))

    first = store.append("portfolio-ids", TRADING_EVENTS.encode(react(signal)))[0]
    rerun = store.append("portfolio-ids", TRADING_EVENTS.encode(react(signal)))[0]
    assert not first.duplicate and rerun.duplicate
    assert (rerun.version, rerun.position) == (first.version, first.position)
    assert store.stream_version("portfolio-ids") == 2


# -- construction-time validation ----------------------------------------------------

@pytest.mark.parametrize("build, fragment", [
    (lambda: CashDeposited(occurred_at=T0, currency="USD", amount=1.5), "CashDeposited.amount"),
    (lambda: CashDeposited(occurred_at=T0, currency="USD", amount=Decimal("NaN")), "finite Decimal"),
    (lambda: CashDeposited(occurred_at=T0, currency="USD", amount=Decimal("-1")), "must be positive"),
    (lambda: CashDeposited(occurred_at=T0, currency="usd", amount=Decimal("1")), "currency code"),
    (lambda: CashDeposited(occurred_at=datetime(2026, 1, 1), currency="USD", amount=Decimal(1)), "timezone-aware"),
    (lambda: OrderRequested(occurred_at=T0, order_id="", instrument="X", side=Side.BUY, quantity=Decimal(1)),
     "order_id"),
    (lambda: OrderRequested(occurred_at=T0, order_id="O", instrument="X", side="buy", quantity=Decimal(1)),
     "expected Side"),
    (lambda: OrderDenied(occurred_at=T0, order_id="O", reason_codes=()), "at least one reason"),
    (lambda: OrderDenied(occurred_at=T0, order_id="O", reason_codes=["X"]), "expected a tuple"),
    (lambda: OrderFilled(occurred_at=T0, order_id="O", fill_id="F", quantity=Decimal(1), price=Decimal(1),
                         fee=Decimal("0.1")), "fee_currency is required"),
    (lambda: InstrumentRegistered(occurred_at=T0, instrument="X", asset_class="equity", currency="USD",
                                  multiplier=Decimal(0)), "multiplier must be positive"),
    (lambda: StrategySignalEvent(occurred_at=T0, strategy="s", instrument="X", side=Side.BUY),
     "needs a quantity or a stop_price"),
    (lambda: TradingDayStarted(occurred_at=T0, trading_day=T0, baseline_equity=Decimal(1)), "expected a date"),
    (lambda: ClusterMapPublished(occurred_at=T0, map_version=1, instruments=("A", "B"), clusters=("c",)),
     "one cluster per instrument"),
    (lambda: ClusterMapPublished(occurred_at=T0, map_version=1, instruments=("A", "A"), clusters=("c", "d")),
     "an instrument twice"),
])
def test_an_event_that_breaks_its_rules_cannot_be_built(build, fragment):
    with pytest.raises(InvalidArgument) as info:
        build()
    assert fragment in str(info.value)
    assert info.value.sqlstate == "FC003"


def test_event_time_is_data_normalized_to_utc():
    paris = timezone(timedelta(hours=1))
    event = CashDeposited(occurred_at=datetime(2026, 11, 24, 10, 30, tzinfo=paris), currency="EUR", amount=Decimal(5))
    assert event.occurred_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC
    assert event.payload()["occurred_at"] == "2026-11-24T09:30:00.000000Z"


# -- canonical encoding ------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (Decimal("1.50"), "1.5"), (Decimal("100"), "100"), (Decimal("1E+2"), "100"), (Decimal("0.000"), "0"),
    (Decimal("-0"), "0"), (Decimal("-2.50"), "-2.5"), (Decimal("1E-8"), "0.00000001"),
    (Decimal("123456789012345678901234567890.123"), "123456789012345678901234567890.123"),
])
def test_decimals_are_encoded_in_plain_notation_without_trailing_zeros(value, text):
    assert canonical_decimal(value) == text
    assert Decimal(text) == value


def test_the_encoding_is_canonical_for_equal_events():
    base = dict(occurred_at=T0, event_id=uuid4(), order_id="O", fill_id="F", price=Decimal("10"))
    a = OrderFilled(quantity=Decimal("1.50"), fee=Decimal("0"), **base)
    b = OrderFilled(quantity=Decimal("1.5"), fee=Decimal("0.00"), **base)
    assert a == b
    assert TRADING_EVENTS.encode(a) == TRADING_EVENTS.encode(b)
    payload = TRADING_EVENTS.encode(a).payload
    assert list(payload) == sorted(payload)
    assert payload == {"fee": "0", "fee_currency": None, "fill_id": "F", "occurred_at": "2026-11-24T09:30:00.000000Z",
                       "order_id": "O", "price": "10", "quantity": "1.5"}
    assert canonical_time(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"


def test_every_registered_type_round_trips_through_the_store(store):
    events = one_of_each()
    assert sorted({e.type_name for e in events}) == TRADING_EVENTS.types()
    store.append("portfolio-roundtrip", [TRADING_EVENTS.encode(e) for e in events], expected_version=0)
    stored = store.read_stream("portfolio-roundtrip")
    decoded = [TRADING_EVENTS.decode(row) for row in stored]
    assert [r.event for r in decoded] == events
    assert [decode_both(row, store) for row in stored] == events
    for recorded, original, row in zip(decoded, events, stored):
        assert type(recorded.event) is type(original)
        assert recorded.event.event_id == original.event_id
        assert recorded.event.causation_id == original.causation_id
        assert recorded.event.correlation_id == original.correlation_id
        assert (recorded.stream, recorded.version, recorded.position) == (row.stream, row.version, row.position)
        assert row.metadata["event_schema"] == 1
        # the stored payload is exactly the canonical one: decimals are strings, never JSON numbers
        assert row.payload == json.loads(json.dumps(original.payload()))


def test_a_psql_user_sees_readable_canonical_payloads(store, db):
    event = OrderPartiallyFilled(occurred_at=T0, order_id="O-1", fill_id="F-1", quantity=Decimal("4.000"),
                                 price=Decimal("187.20"), fee=Decimal("0.35"), fee_currency="USD")
    store.append("portfolio-psql", TRADING_EVENTS.encode(event))
    text, quantity_type = db.execute(
        "SELECT payload::text, jsonb_typeof(payload->'quantity') FROM finam.events WHERE id = %s",
        (event.event_id,)).fetchone()
    assert quantity_type == "string"
    assert '"quantity": "4"' in text and '"price": "187.2"' in text
    assert '"occurred_at": "2026-11-24T09:30:00.000000Z"' in text


def test_encoding_an_unregistered_event_is_refused():
    @dataclass(frozen=True, kw_only=True)
    class NotRegistered(DomainEvent):
        note: str

    with pytest.raises(InvalidArgument, match="not registered"):
        TRADING_EVENTS.encode(NotRegistered(occurred_at=T0, note="x"))


# -- decoding failures name the event ------------------------------------------------------

def stored_raw(store, type_name: str, payload: dict, metadata: dict | None = None):
    event_id = uuid4()
    store.append("portfolio-raw", NewEvent(event_id, type_name, payload, metadata or {}))
    return event_id, store.read_stream_backward("portfolio-raw", max_count=1)[0]


def decode_both(row, store, registry=TRADING_EVENTS):
    """``registry.decode(row)``'s event, after checking that ``decode_json`` of the same row read as JSON
    text (the replay path) gives the very same event, or raises the very same error (re-raised here)."""
    event_id, type_name, version, payload, metadata = store.read_stream_json(row.stream, row.version, 1)[0]
    assert (event_id, type_name, version) == (row.id, row.type, row.version)
    try:
        expected = registry.decode(row).event
    except UndecodableEvent as error:
        with pytest.raises(UndecodableEvent) as info:
            registry.decode_json(event_id, type_name, payload, metadata)
        assert (type(info.value), str(info.value), info.value.event_id, info.value.type_name) == \
            (type(error), str(error), error.event_id, error.type_name)
        raise
    assert_same_event(registry.decode_json(event_id, type_name, payload, metadata), expected)
    return expected


def assert_same_event(got: DomainEvent, expected: DomainEvent) -> None:
    """Same class and the same field values, down to their types, a Decimal's exponent and a datetime's zone."""
    assert type(got) is type(expected)
    assert repr(vars(got)) == repr(vars(expected)), (vars(got), vars(expected))


def test_an_unknown_type_is_an_error_naming_the_event(store):
    event_id, row = stored_raw(store, "PositionTeleported", {"x": "1"})
    with pytest.raises(UnknownEventType) as info:
        decode_both(row, store)
    assert info.value.event_id == event_id and str(event_id) in str(info.value)
    assert "PositionTeleported" in str(info.value)
    assert info.value.sqlstate == "FC006"


GOOD_DEPOSIT = {"occurred_at": "2026-11-24T09:30:00.000000Z", "currency": "USD", "amount": "10"}


@pytest.mark.parametrize("payload, fragment", [
    ({k: v for k, v in GOOD_DEPOSIT.items() if k != "amount"}, "missing ['amount']"),
    ({**GOOD_DEPOSIT, "memo": "hi"}, "unexpected ['memo']"),
    ({**GOOD_DEPOSIT, "amount": 10.5}, "field 'amount'"),          # a JSON number, not a decimal string
    ({**GOOD_DEPOSIT, "amount": "ten"}, "not a decimal number"),
    ({**GOOD_DEPOSIT, "amount": "Infinity"}, "not a finite number"),
    ({**GOOD_DEPOSIT, "amount": "-10"}, "must be positive"),        # the class's own rules apply on decode too
    ({**GOOD_DEPOSIT, "occurred_at": "2026-11-24T09:30:00"}, "has no timezone"),
    ({**GOOD_DEPOSIT, "currency": 840}, "field 'currency'"),
])
def test_a_payload_that_does_not_fit_its_class_is_an_error_naming_the_event(store, payload, fragment):
    event_id, row = stored_raw(store, "CashDeposited", payload)
    with pytest.raises(UndecodableEvent) as info:
        decode_both(row, store)
    assert info.value.event_id == event_id
    assert str(event_id) in str(info.value) and "CashDeposited" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("metadata, fragment", [
    ({"causation_id": 42}, "metadata: expected a UUID string"),      # another client's number, not an id
    ({"correlation_id": ["x"]}, "metadata: expected a UUID string"),
    ({"causation_id": "not-a-uuid"}, "metadata: badly formed"),
    ({"correlation_id": "1234"}, "metadata: badly formed"),
])
def test_metadata_ids_that_are_not_uuids_are_an_error_naming_the_event(store, metadata, fragment):
    event_id, row = stored_raw(store, "CashDeposited", GOOD_DEPOSIT, metadata)
    with pytest.raises(UndecodableEvent) as info:
        decode_both(row, store)
    assert info.value.event_id == event_id and fragment in str(info.value)


def test_metadata_ids_decode_in_every_form_uuid_accepts_and_interleaved(store):
    ids = [uuid4() for _ in range(3)]
    spellings = [str(ids[0]), "{%s}" % ids[1], ids[2].urn, str(ids[0]).upper(), ids[1].hex, str(ids[0])]
    expected = [ids[0], ids[1], ids[2], ids[0], ids[1], ids[0]]
    rows = [stored_raw(store, "CashDeposited", GOOD_DEPOSIT, {"causation_id": text, "correlation_id": text})[1]
            for text in spellings]
    decoded = [decode_both(row, store) for row in rows]
    assert [e.causation_id for e in decoded] == [e.correlation_id for e in decoded] == expected
    assert all(type(e.correlation_id) is UUID for e in decoded)
    no_metadata = decode_both(stored_raw(store, "CashDeposited", GOOD_DEPOSIT)[1], store)
    assert no_metadata.causation_id is None and no_metadata.correlation_id == no_metadata.event_id


def test_an_event_written_by_a_newer_schema_is_refused(store):
    event_id, row = stored_raw(store, "CashDeposited", GOOD_DEPOSIT, {"event_schema": 2})
    with pytest.raises(UndecodableEvent, match="newer than this code"):
        decode_both(row, store)


# -- upcasting ------------------------------------------------------------------------

def test_an_upcaster_turns_an_older_payload_into_the_current_class(store):
    registry = EventRegistry()

    @registry.register
    @dataclass(frozen=True, kw_only=True)
    class FeeCharged(DomainEvent):
        """Version 2 split 'fee' (a string like '1.5 USD') into amount and currency."""

        schema_version = 2
        amount: Decimal
        currency: str

    @registry.upcaster("FeeCharged", from_version=1)
    def split_fee(payload):
        amount, currency = payload.pop("fee").split()
        return {**payload, "amount": amount, "currency": currency}

    old_id = uuid4()
    store.append("fees-1", NewEvent(old_id, "FeeCharged",
                                    {"occurred_at": "2026-11-24T09:30:00Z", "fee": "1.5 USD"},
                                    {"event_schema": 1}))
    new = FeeCharged(occurred_at=T0, amount=Decimal("2"), currency="EUR")
    store.append("fees-1", registry.encode(new))
    old_row, new_row = store.read_stream("fees-1")
    assert new_row.metadata["event_schema"] == 2
    upcast = decode_both(old_row, store, registry)
    assert upcast == FeeCharged(occurred_at=T0, event_id=old_id, amount=Decimal("1.5"), currency="USD")
    assert decode_both(new_row, store, registry) == new


def test_a_missing_upcaster_is_an_error_not_a_skip(store):
    registry = EventRegistry()

    @registry.register
    @dataclass(frozen=True, kw_only=True)
    class Renamed(DomainEvent):
        schema_version = 3
        name: str

    registry.upcaster("Renamed", from_version=1)(lambda payload: payload)
    event_id = uuid4()
    store.append("renamed-1", NewEvent(event_id, "Renamed", {"occurred_at": "2026-11-24T09:30:00Z", "name": "x"},
                                       {"event_schema": 1}))
    with pytest.raises(UndecodableEvent, match="no upcaster from schema 2 to 3") as info:
        decode_both(store.read_stream("renamed-1")[0], store, registry)
    assert info.value.event_id == event_id


def test_two_classes_cannot_claim_one_type_name():
    registry = EventRegistry()

    @registry.register
    @dataclass(frozen=True, kw_only=True)
    class Thing(DomainEvent):
        note: str

    @dataclass(frozen=True, kw_only=True)
    class Other(DomainEvent):
        type_name = "Thing"
        note: str

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Other)


# -- decode_json against decode_event on payloads that bend every rule -------------------------

#: Ids in the forms uuid.UUID accepts (msgspec only the first three) and not.
_TRICKY_IDS = [
    "6f1c2a3e-5b4d-4c8e-9f00-112233445566", "6F1C2A3E-5B4D-4C8E-9F00-112233445566",
    "6f1c2a3e5b4d4c8e9f00112233445566", "{6f1c2a3e-5b4d-4c8e-9f00-112233445566}",
    "urn:uuid:6f1c2a3e-5b4d-4c8e-9f00-112233445566", "6f1c2a3e-5b4d-4c8e-9f00-11223344556", "1234",
]
_TRICKY_TEXT = [
    # decimals: canonical, other spellings Decimal accepts, and what it must refuse
    "0", "-0", "1.50", "0E-7", "1E+5", "1e5", " 1", "1_000", "１２", "NaN", "sNaN", "Infinity", "-inf",
    "1E+101", "1E-101", "", "abc",
    # timestamps: canonical, other ISO forms, more than 6 fractional digits, naive, not one
    "2026-01-01T01:23:20.000000Z", "2026-01-01T01:23:20Z", "2026-01-01 01:23:20+02:00",
    "2026-01-01T01:23:20.1234567Z", "2026-01-01T01:23:20.9999995Z", "2026-01-01T01:23:20", "2026-01-01",
    "20260101T012320Z", "2026-13-01T00:00:00Z",
    *_TRICKY_IDS,
    # enums, codes, currencies, dates
    "buy", "BUY", "sell", "active", "halted", "USD", "usd", " ", "x" * 201, "2026-11-24", "2026-1-1",
]
_TRICKY = st.one_of(
    st.sampled_from(_TRICKY_TEXT), st.text(max_size=4), st.none(), st.booleans(),
    st.sampled_from([0, 1, -1, 2, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 2 ** 70, 1.5, 1.0, -0.0, 1e300]),
    st.lists(st.sampled_from(["c1", "AAPL", "", 1, None]), max_size=3), st.just({"a": "1"}))
_ENVELOPES = [None, *_TRICKY_IDS, "", "buy", 42, ["x"]]


@st.composite
def bent_stored_events(draw):
    """(type, payload, metadata) of a real event with some fields replaced, dropped or added."""
    event = draw(st.sampled_from(one_of_each()))
    payload, metadata = dict(event.payload()), dict(event.metadata())
    for name in draw(st.lists(st.sampled_from(sorted(payload)), max_size=3, unique=True)):
        payload[name] = draw(_TRICKY)
    if draw(st.integers(0, 9)) == 0:
        payload.pop(draw(st.sampled_from(sorted(payload))))
    if draw(st.integers(0, 9)) == 0:
        payload[draw(st.sampled_from(["memo", "fee", "id"]))] = draw(_TRICKY)
    for key in (CAUSATION_ID, CORRELATION_ID):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            metadata.pop(key)
        elif choice == 1:
            metadata[key] = draw(st.sampled_from(_ENVELOPES))
    if draw(st.integers(0, 5)) == 0:
        metadata[EVENT_SCHEMA] = draw(st.sampled_from([0, 2, 2 ** 70, True, "1", 1.0, None]))
    if draw(st.integers(0, 9)) == 0:
        metadata["trace"] = {"span": draw(_TRICKY)}
    return event.type_name, payload, metadata


@settings(max_examples=1500, deadline=None)
@given(bent_stored_events())
def test_decode_json_gives_decode_events_event_or_error_for_any_payload(stored):
    type_name, payload, metadata = stored
    event_id = uuid4()
    payload_text = json.dumps(payload, ensure_ascii=False).encode()  # as PostgreSQL writes jsonb: UTF-8, unescaped
    metadata_text = json.dumps(metadata, ensure_ascii=False).encode()
    try:
        expected = TRADING_EVENTS.decode_event(event_id, type_name, json_loads(payload_text), json_loads(metadata_text))
    except UndecodableEvent as error:
        with pytest.raises(UndecodableEvent) as info:
            TRADING_EVENTS.decode_json(event_id, type_name, payload_text, metadata_text)
        assert (type(info.value), str(info.value)) == (type(error), str(error))
        return
    assert_same_event(TRADING_EVENTS.decode_json(event_id, type_name, payload_text.decode(), metadata_text.decode()),
                      expected)
    assert_same_event(TRADING_EVENTS.decode_json(event_id, type_name, payload_text, metadata_text), expected)


@pytest.mark.parametrize("payload, metadata, fragment", [
    (b'{"amount": "10"', b"{}", "does not decode: payload is not valid JSON (Input data was truncated)"),
    (b'{"amount": "10"}', b"{x}", "does not decode: metadata is not valid JSON"),
    (b'["amount"]', b"{}", "payload is not a JSON object"),
    (b'{"amount": "10", "currency": "USD", "occurred_at": "2026-11-24T09:30:00Z"}', b"null",
     "metadata is not a JSON object"),
])
def test_decode_json_of_text_that_is_not_a_json_object_is_an_error_naming_the_event(payload, metadata, fragment):
    event_id = uuid4()
    with pytest.raises(UndecodableEvent) as info:
        TRADING_EVENTS.decode_json(event_id, "CashDeposited", payload, metadata)
    assert info.value.event_id == event_id and str(event_id) in str(info.value) and fragment in str(info.value)
