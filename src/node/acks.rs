//! A channel's acknowledgements, coalesced.
//!
//! Every delivery is acknowledged once its reply is out. When the
//! deliveries before it are all settled too, one `basic.ack` with
//! `multiple` can cover many of them: while one ack is being written, the
//! deliveries that finish meanwhile are covered by the next one. That saves
//! the broker (which bounds throughput on a small machine) and the node a
//! frame per call under load; with one call at a time nothing changes. A
//! delivery that finishes while an earlier one still runs is acknowledged
//! on its own at once, so a slow handler never holds back the acks of the
//! others (and with them the prefetch window).
//!
//! Acks go out through the channel rather than lapin's per-delivery
//! `Acker`, which hands each one to a task of lapin's own.

use std::collections::VecDeque;
use std::sync::Mutex;

/// What the caller of [`Acks::settled`] or [`Acks::sent`] must send now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// Nothing: another task is sending an ack that will cover it, or it
    /// was rejected already.
    Nothing,
    /// `basic.ack` of this one delivery; once it is out, call
    /// [`Acks::settled`] for it again, as rejected (the broker forgot it).
    One(u64),
    /// `basic.ack` with `multiple` up to this tag; then call [`Acks::sent`].
    UpTo(u64),
}

/// The acknowledgement state of one channel's deliveries.
#[derive(Debug)]
pub(crate) struct Acks {
    state: Mutex<State>,
}

/// Where one delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Its handler runs.
    Running,
    /// Its own ack is being sent: no multiple ack may cover it before
    /// that one is out (the broker would answer "unknown delivery tag" to
    /// the second ack of a tag, and close the channel).
    Sending,
    /// Finished; its ack is still to be sent.
    NeedsAck,
    /// Acked on its own, or rejected: the broker forgot it.
    Gone,
}

#[derive(Debug)]
struct State {
    /// The lowest delivery tag still running.
    next: u64,
    /// Slots of the tags from `next` on.
    slots: VecDeque<Slot>,
    /// The highest tag below `next` that needs an ack (0: none).
    needs_upto: u64,
    /// The highest tag a multiple ack covered or is covering.
    covered: u64,
    /// Whether a task is sending a multiple ack now.
    sending: bool,
}

impl Acks {
    /// The state of a new channel (delivery tags start at 1).
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                next: 1,
                slots: VecDeque::new(),
                needs_upto: 0,
                covered: 0,
                sending: false,
            }),
        }
    }

    /// Delivery `tag` is finished: `rejected` if it was rejected already
    /// (it needs no ack, but later acks may now cover the ones before it).
    /// Says what to send.
    pub(crate) fn settled(&self, tag: u64, rejected: bool) -> Ack {
        let mut s = self.lock();
        let Some(index) = tag.checked_sub(s.next) else {
            return Ack::Nothing;
        };
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        if s.slots.len() <= index {
            s.slots.resize(index + 1, Slot::Running);
        }
        if index > 0 {
            // Earlier deliveries still run: do not wait for them.
            if rejected {
                s.slots[index] = Slot::Gone;
                return Ack::Nothing;
            }
            s.slots[index] = Slot::Sending;
            return Ack::One(tag);
        }
        s.slots[0] = if rejected { Slot::Gone } else { Slot::NeedsAck };
        while let Some(&slot) = s.slots.front() {
            if matches!(slot, Slot::Running | Slot::Sending) {
                break;
            }
            if slot == Slot::NeedsAck {
                s.needs_upto = s.next;
            }
            s.slots.pop_front();
            s.next += 1;
        }
        if s.sending || s.needs_upto <= s.covered {
            return Ack::Nothing;
        }
        s.sending = true;
        s.covered = s.needs_upto;
        Ack::UpTo(s.covered)
    }

    /// A multiple ack went out (`ok`) or could not (`!ok`, the channel is
    /// gone); says whether another must follow.
    pub(crate) fn sent(&self, ok: bool) -> Ack {
        let mut s = self.lock();
        if ok && s.needs_upto > s.covered {
            s.covered = s.needs_upto;
            Ack::UpTo(s.covered)
        } else {
            s.sending = false;
            Ack::Nothing
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_deliveries_share_acks_while_one_is_sent() {
        let acks = Acks::new();
        assert_eq!(acks.settled(1, false), Ack::UpTo(1));
        // While that one is written, 2 and 3 finish.
        assert_eq!(acks.settled(2, false), Ack::Nothing);
        assert_eq!(acks.settled(3, false), Ack::Nothing);
        assert_eq!(acks.sent(true), Ack::UpTo(3));
        assert_eq!(acks.sent(true), Ack::Nothing);
        // Idle again: the next one is acked at once.
        assert_eq!(acks.settled(4, false), Ack::UpTo(4));
        assert_eq!(acks.sent(true), Ack::Nothing);
    }

    #[test]
    fn a_slow_delivery_does_not_hold_back_the_others() {
        let acks = Acks::new();
        // 1 is still running: 2 and 3 are acked alone, at once.
        assert_eq!(acks.settled(2, false), Ack::One(2));
        assert_eq!(acks.settled(3, false), Ack::One(3));
        assert_eq!(acks.settled(2, true), Ack::Nothing);
        // When 1 finishes, 3's own ack may not be out yet: the multiple
        // ack stops before it.
        assert_eq!(acks.settled(1, false), Ack::UpTo(1));
        assert_eq!(acks.settled(4, false), Ack::One(4));
        assert_eq!(acks.sent(true), Ack::Nothing);
        // Once 3 and 4 are out, nothing is left to ack up to 4.
        assert_eq!(acks.settled(3, true), Ack::Nothing);
        assert_eq!(acks.settled(4, true), Ack::Nothing);
        assert_eq!(acks.settled(5, false), Ack::UpTo(5));
    }

    #[test]
    fn rejected_deliveries_are_not_acked_but_let_later_acks_pass() {
        let acks = Acks::new();
        assert_eq!(acks.settled(1, true), Ack::Nothing);
        assert_eq!(acks.settled(3, true), Ack::Nothing);
        // The ack ends on 2, the last one the broker still holds.
        assert_eq!(acks.settled(2, false), Ack::UpTo(2));
        assert_eq!(acks.sent(true), Ack::Nothing);
        assert_eq!(acks.settled(5, false), Ack::One(5));
        assert_eq!(acks.settled(4, true), Ack::Nothing);
        assert_eq!(acks.settled(6, false), Ack::One(6));
        assert_eq!(acks.settled(5, true), Ack::Nothing);
        assert_eq!(acks.settled(6, true), Ack::Nothing);
        assert_eq!(acks.settled(7, false), Ack::UpTo(7));
    }

    #[test]
    fn a_failed_send_stops_the_sender() {
        let acks = Acks::new();
        assert_eq!(acks.settled(1, false), Ack::UpTo(1));
        assert_eq!(acks.settled(2, false), Ack::Nothing);
        assert_eq!(acks.sent(false), Ack::Nothing);
        // The next finisher becomes the sender.
        assert_eq!(acks.settled(3, false), Ack::UpTo(3));
    }
}
