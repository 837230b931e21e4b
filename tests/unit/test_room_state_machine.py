"""A hypothesis state machine for the room: random joins, leaves, messages and slow members.

The model keeps, for every member, the exact list of deliveries it must find in its outbox:
its welcome, then every message the room accepted after it joined (not its own, unless it is a
datagram-style member that hears itself) and every notice it was told, in the room's one
global order. After every step the machine checks that

* each outbox holds exactly as many deliveries as the model says are still unread, and every
  drained delivery is exactly the next one the model expects (total order, nothing lost,
  nothing duplicated, nothing extra);
* a member whose outbox overflowed was evicted at that very message, told why (``on_evict``
  with the reason, exactly once), and is no longer in ``room.names()``; everything queued for
  it before the eviction is still there to flush, then its outbox ends;
* names are unique ignoring case (casefold), in join order, and case variants of a present
  name are refused;
* ``room.statistics()`` agrees with the model: members, joins, leaves, messages, deliveries,
  evictions.

Room is synchronous, so the machine runs synchronously; each member's ``on_evict`` does what a
session does: it leaves the room and closes the member's outbox.
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from triochat.events import ChatMessage, Notice, Renamed, Welcome
from triochat.room import OUTBOX_LIMIT, Delivery, InvalidName, Member, NameTaken, Room, open_outbox
from triochat.text import check_name

NOW = "2024-03-21 10:30:45"
"""The receive time the tests' room is told (the room reads no clock)."""


def full_reason(limit: int) -> str:
    """Why a member whose outbox of ``limit`` deliveries overflowed is disconnected."""
    return f"Disconnected: you fell more than {limit} messages behind"


SHUTDOWN_REASON = "Server shutting down"

Item = tuple[str, ...]
"""What a delivery shows, comparable with the model: ("welcome", name),
("msg", sender, text) or ("notice", text)."""


def item_of(delivery: Delivery) -> Item:
    event = delivery.event
    if isinstance(event, Welcome):
        return ("welcome", event.name)
    if isinstance(event, ChatMessage):
        return ("msg", event.sender, event.text)
    if isinstance(event, Notice):
        return ("notice", event.text)
    if isinstance(event, Renamed):
        return ("renamed", event.old, event.new)
    raise AssertionError(f"unexpected delivery {event!r}")


def is_valid_name(name: str) -> bool:
    try:
        check_name(name)
    except InvalidName:
        return False
    return True


# Names that collide under casefold in interesting ways ("ß" and "SS" are one name).
COLLIDING_NAMES = [
    "alice",
    "Alice",
    "ALICE",
    "bob",
    "Bob",
    "ß",
    "ss",
    "SS",
    "straße",
    "STRASSE",
    "Σίσυφος",
    "ΣΊΣΥΦΟΣ",
    "ﬁsh",
    "FISH",
    "İstanbul",
    "i̇stanbul",
    "K",  # KELVIN SIGN: casefolds to "k"
    "k",
]
assert all(is_valid_name(name) for name in COLLIDING_NAMES)

valid_names = st.one_of(
    st.sampled_from(COLLIDING_NAMES),
    st.text(
        alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=32
    ).filter(is_valid_name),
)

invalid_names = st.one_of(
    st.sampled_from(
        [
            "",
            "has space",
            "tab\there",
            "new\nline",
            "colon:name",
            "{json",
            "/slash",
            "*star",
            "#hash",
            "x" * 33,
            "bell\x07",
            "rtl\u202eoverride",
        ]
    ),
    st.builds(
        lambda head, bad, tail: head + bad + tail,
        st.text(max_size=8),
        st.sampled_from([" ", "\t", "\n", "\r", ":", "\x00", "\x1b", "\u2028", "\u202e", "\xa0"]),
        st.text(max_size=8),
    ),
)

CASE_VARIANTS = {
    "upper": str.upper,
    "lower": str.lower,
    "swapcase": str.swapcase,
    "title": str.title,
    "casefold": str.casefold,
}

message_texts = st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=20)


class Tracked:
    """One member as the model sees it (a plain class: hypothesis shows only its repr)."""

    def __init__(
        self,
        name: str,
        member: Member,
        inbox: trio.MemoryReceiveChannel[Delivery],
        outbox: trio.MemorySendChannel[Delivery],
    ) -> None:
        self.name = name
        self.member = member
        self.inbox = inbox
        self.outbox = outbox
        self.expected: list[Item] = []
        self.drained = 0
        self.slow = False
        self.reasons: list[str] = []
        self.gone: str | None = None  # None while in the room, then "left" or "evicted"
        self.expected_reason: str | None = None  # why the model says it was evicted

    @property
    def queued(self) -> int:
        return len(self.expected) - self.drained

    def __repr__(self) -> str:  # short, for hypothesis's reports
        return f"<{self.name!r} queued={self.queued} slow={self.slow} gone={self.gone}>"


class RoomMachine(RuleBasedStateMachine):
    """Room and model side by side; subclasses may use smaller outboxes."""

    capacity: int = OUTBOX_LIMIT
    """Outbox size: the real default, or smaller in a subclass."""

    def __init__(self) -> None:
        super().__init__()
        self.room = Room(outbox_limit=self.capacity)
        self.live: list[Tracked] = []  # in join order
        self.everyone: list[Tracked] = []
        self.closing = False
        self.joins = 0
        self.leaves = 0
        self.evictions = 0  # not counting the evictions of a shutdown
        self.shutdown_evictions = 0
        self.messages = 0
        self.deliveries = 0
        self.serial = 0
        self.port = 10000

    @property
    def limit(self) -> int:
        return self.capacity

    def _new_outbox(
        self,
    ) -> tuple[trio.MemorySendChannel[Delivery], trio.MemoryReceiveChannel[Delivery]]:
        return self.room.open_outbox()

    # --- the model's delivery rule --------------------------------------------------------------

    def _model_deliver(self, tracked: Tracked, item: Item) -> bool:
        """What ``deliver_nowait`` must do: queue, or evict when the outbox is full."""
        assert tracked.gone is None
        if tracked.queued >= self.limit:
            self._model_evict(tracked, full_reason(self.limit))
            return False
        tracked.expected.append(item)
        return True

    def _model_evict(self, tracked: Tracked, reason: str) -> None:
        tracked.gone = "evicted"
        tracked.expected_reason = reason
        event("member evicted" if reason != SHUTDOWN_REASON else "member told of shutdown")
        self.live.remove(tracked)
        if self.closing:
            self.shutdown_evictions += 1
        else:
            self.evictions += 1

    # --- joining ---------------------------------------------------------------------------

    def _attempt_join(self, name: str, receives_own: bool) -> None:
        outbox, inbox = self._new_outbox()
        self.port += 1
        tracked_box: list[Tracked] = []

        def on_evict(reason: str) -> None:
            # What a session does: remember why, leave the room, close the outbox.
            tracked = tracked_box[0]
            tracked.reasons.append(reason)
            self.room.leave(tracked.member)
            tracked.outbox.close()

        member = Member(
            name=name,
            ip="127.0.0.1",
            port=self.port,
            outbox=outbox,
            on_evict=on_evict,
            receives_own=receives_own,
        )
        tracked = Tracked(name, member, inbox, outbox)
        tracked_box.append(tracked)

        valid = is_valid_name(name)
        taken = any(other.name.casefold() == name.casefold() for other in self.live)
        try:
            self.room.join(member)
        except InvalidName:
            assert not valid, f"valid name {name!r} refused as invalid"
            self._assert_not_joined(member)
            return
        except NameTaken:
            event("join refused: name taken")
            assert valid
            assert taken or self.closing, f"{name!r} refused but nobody has it"
            self._assert_not_joined(member)
            return
        assert valid, f"invalid name {name!r} accepted"
        assert not taken, f"{name!r} accepted while {self.room.names()} are here"
        assert not self.closing, "joined a closing room"
        self.joins += 1
        self.live.append(tracked)
        self.everyone.append(tracked)
        # Sessions queue the welcome in the same step as the join, before any broadcast.
        assert member.deliver_nowait(Delivery(Welcome(name, tuple(self.room.names()))))
        tracked.expected.append(("welcome", name))

    def _assert_not_joined(self, member: Member) -> None:
        assert all(tracked.member is not member for tracked in self.live)
        assert member not in list(self.room)

    @initialize(names=st.lists(valid_names, max_size=3))
    def start(self, names: list[str]) -> None:
        for name in names:
            self._attempt_join(name, receives_own=False)

    @rule(name=valid_names, receives_own=st.booleans())
    def join(self, name: str, receives_own: bool) -> None:
        self._attempt_join(name, receives_own)

    @rule(name=invalid_names)
    def join_with_invalid_name(self, name: str) -> None:
        before = self.room.names()
        self._attempt_join(name, receives_own=False)
        assert self.room.names() == before

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), variant=st.sampled_from(sorted(CASE_VARIANTS)))
    def join_with_case_variant(self, data: st.DataObject, variant: str) -> None:
        present = data.draw(st.sampled_from(self.live), label="present member")
        candidate = CASE_VARIANTS[variant](present.name)
        before = self.room.names()
        if is_valid_name(candidate) and candidate.casefold() == present.name.casefold():
            event("case variant refused")
            with pytest.raises(NameTaken):
                self.room.join(
                    Member(candidate, "127.0.0.1", 1, self._new_outbox()[0], lambda _: None)
                )
            assert self.room.names() == before
        else:
            # Not the same name after all (e.g. "ı".upper() is "I"): the model decides.
            self._attempt_join(candidate, receives_own=False)

    @precondition(lambda self: bool(self.live) and not self.closing)
    @rule(data=st.data(), name=valid_names)
    def rename(self, data: st.DataObject, name: str) -> None:
        tracked = data.draw(st.sampled_from(self.live), label="renamed member")
        old = tracked.name
        taken = any(
            other is not tracked and other.name.casefold() == name.casefold() for other in self.live
        )
        before = self.room.names()
        if taken:
            event("rename refused: name taken")
            with pytest.raises(NameTaken):
                self.room.rename(tracked.member, name)
            assert self.room.names() == before and tracked.member.name == old
            return
        event("renamed")
        assert self.room.rename(tracked.member, name) == old
        tracked.name = name
        # Only the member itself is told (nobody in the model asked for notices); a full
        # outbox evicts it right there.
        if self._model_deliver(tracked, ("renamed", old, name)):
            # Atomic and in place: the same members in the same order, one name changed.
            assert self.room.names() == [name if n == old else n for n in before]
        else:
            assert self.room.names() == [n for n in before if n != old]
        if old.casefold() != name.casefold():
            assert self.room.find(old) is None

    # --- leaving ---------------------------------------------------------------------------

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        tracked = data.draw(st.sampled_from(self.live), label="leaver")
        # What a session does when its member leaves: leave the room, close the outbox.
        self.room.leave(tracked.member)
        tracked.outbox.close()
        self.room.leave(tracked.member)  # harmless twice
        self.live.remove(tracked)
        tracked.gone = "left"
        self.leaves += 1

    @precondition(lambda self: not self.closing and self.messages >= 3)
    @rule()
    def shut_down(self) -> None:
        self.closing = True
        for tracked in list(self.live):
            self._model_evict(tracked, SHUTDOWN_REASON)
        self.room.close(SHUTDOWN_REASON)
        assert self.room.closing

    # --- talking ---------------------------------------------------------------------------

    def _broadcast(self, sender: Tracked, text: str) -> None:
        self.serial += 1
        unique = f"#{self.serial} {text}"
        expected_recipients: list[str] = []
        for tracked in list(self.live):
            if tracked is sender and not tracked.member.receives_own:
                continue
            if self._model_deliver(tracked, ("msg", sender.name, unique)):
                expected_recipients.append(tracked.name)
        message = self.room.broadcast(sender.member, unique, received_at=NOW)
        assert message.sender == sender.name
        assert message.text == unique
        self.messages += 1
        self.deliveries += len(expected_recipients)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), text=message_texts)
    def broadcast(self, data: st.DataObject, text: str) -> None:
        sender = data.draw(st.sampled_from(self.live), label="sender")
        self._broadcast(sender, text)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), count=st.sampled_from([2, 10, OUTBOX_LIMIT // 4, OUTBOX_LIMIT + 1]))
    def flood(self, data: st.DataObject, count: int) -> None:
        """One member sends many messages at once: enough to overflow an undrained outbox."""
        sender = data.draw(st.sampled_from(self.live), label="flooder")
        for number in range(count):
            if sender.gone is not None:  # a self-hearing flooder can evict itself
                break
            self._broadcast(sender, f"flood {number}")

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), text=message_texts)
    def tell(self, data: st.DataObject, text: str) -> None:
        tracked = data.draw(st.sampled_from(self.live), label="told")
        self._model_deliver(tracked, ("notice", text))
        self.room.tell(tracked.member, text)

    # --- reading ---------------------------------------------------------------------------

    def _drain(self, tracked: Tracked, most: int) -> None:
        for _ in range(most):
            if tracked.queued == 0:
                break
            delivery = tracked.inbox.receive_nowait()
            expected = tracked.expected[tracked.drained]
            assert item_of(delivery) == expected, (tracked.name, tracked.drained)
            tracked.drained += 1

    def _readers(self) -> list[Tracked]:
        return [tracked for tracked in self.everyone if not tracked.slow and tracked.queued]

    @precondition(lambda self: bool(self._readers()))
    @rule(data=st.data(), most=st.integers(min_value=1, max_value=OUTBOX_LIMIT + 5))
    def drain_some(self, data: st.DataObject, most: int) -> None:
        tracked = data.draw(st.sampled_from(self._readers()), label="reader")
        self._drain(tracked, most)

    @precondition(lambda self: bool(self._readers()))
    @rule()
    def drain_everyone(self) -> None:
        for tracked in self._readers():
            self._drain(tracked, tracked.queued)

    @precondition(lambda self: any(not tracked.slow for tracked in self.live))
    @rule(data=st.data())
    def become_slow(self, data: st.DataObject) -> None:
        """This member never reads again: it must be evicted once it is a full outbox behind."""
        candidates = [tracked for tracked in self.live if not tracked.slow]
        data.draw(st.sampled_from(candidates), label="slow member").slow = True

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def names_match_the_model(self) -> None:
        names = self.room.names()
        assert names == [tracked.name for tracked in self.live]
        keys = [name.casefold() for name in names]
        assert len(set(keys)) == len(keys), names
        assert len(self.room) == len(self.live)
        for tracked in self.live:
            assert self.room.find(tracked.name) is tracked.member
            for variant in CASE_VARIANTS.values():
                other = variant(tracked.name)
                if other.casefold() == tracked.name.casefold():
                    assert self.room.find(other) is tracked.member

    @invariant()
    def outboxes_hold_exactly_what_is_unread(self) -> None:
        for tracked in self.everyone:
            used = tracked.inbox.statistics().current_buffer_used
            assert used == tracked.queued, (tracked.name, used, tracked.queued)
            assert tracked.queued <= self.limit

    @invariant()
    def evicted_members_were_told_why_exactly_once(self) -> None:
        for tracked in self.everyone:
            if tracked.gone == "evicted":
                reason = tracked.expected_reason
                assert tracked.reasons == [reason], tracked.reasons
                assert tracked.member.evicted_reason == reason
            else:
                assert tracked.reasons == []
                assert tracked.member.evicted_reason is None
            if tracked.gone is not None:
                # Gone for good (its name may since have been taken by somebody new).
                assert tracked.member not in list(self.room)
                assert self.room.find(tracked.name) is not tracked.member

    @invariant()
    def statistics_agree(self) -> None:
        stats = self.room.statistics()
        assert stats.members == len(self.live)
        assert stats.joined == self.joins
        assert stats.left == self.leaves + self.evictions + self.shutdown_evictions
        assert stats.messages == self.messages
        assert stats.deliveries == self.deliveries
        assert stats.evictions == self.evictions

    def teardown(self) -> None:
        """Everyone, slow members included, finds exactly the model's deliveries, in order."""
        for tracked in self.everyone:
            self._drain(tracked, tracked.queued)
            if tracked.gone is None:
                with pytest.raises(trio.WouldBlock):
                    tracked.inbox.receive_nowait()
            else:
                # Evicted or left: the outbox was closed after its last delivery.
                with pytest.raises(trio.EndOfChannel):
                    tracked.inbox.receive_nowait()
        self._check_total_order()

    def _check_total_order(self) -> None:
        """Any two members saw the messages they share in the same relative order."""
        global_order: dict[Item, int] = {}
        for tracked in self.everyone:
            for item in tracked.expected:
                if item[0] == "msg":
                    global_order.setdefault(item, int(item[2].split(" ", 1)[0][1:]))
        for tracked in self.everyone:
            serials = [global_order[item] for item in tracked.expected if item[0] == "msg"]
            assert serials == sorted(serials)
            assert len(set(serials)) == len(serials)


class SmallOutboxRoomMachine(RoomMachine):
    """The same machine with three-slot outboxes, so evictions happen all the time."""

    capacity = 3


FAST = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestRoomStateMachine = RoomMachine.TestCase
TestRoomStateMachine.settings = FAST
TestSmallOutboxRoomStateMachine = SmallOutboxRoomMachine.TestCase
TestSmallOutboxRoomStateMachine.settings = settings(FAST, max_examples=300)


def test_default_outbox_is_the_documented_limit() -> None:
    """The machine above runs with the real default: the room's own outboxes."""
    room = Room()
    assert room.outbox_limit == OUTBOX_LIMIT
    send, _receive = room.open_outbox()
    assert send.statistics().max_buffer_size == OUTBOX_LIMIT
    send, _receive = open_outbox()
    assert send.statistics().max_buffer_size == OUTBOX_LIMIT
