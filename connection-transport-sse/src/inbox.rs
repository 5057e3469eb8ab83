//! [`Inbox`]: the bounded queue items wait in for the application.
//!
//! A reader task moves a whole chunk's items in under one lock and wakes the readers
//! once, and a reader takes items one at a time under that lock without waking anyone
//! until the writer is waiting and the queue is half empty. A channel that hands over
//! one item at a time costs a cross-thread wake-up per event when the application keeps
//! up, which tripled the CPU per event end to end.
//!
//! ```text
//!   writer: lock ─ move what fits ─ unlock ─ notify readers ─ [full: wait "writable"]
//!   reader: lock ─ pop ─ unlock ─ [writer waiting and ≤ half full: notify "writable"]
//!           [empty: wait "readable" (registered before looking, so no wake-up is lost)]
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::event::SseItem;

pub(crate) struct Inbox {
    state: Mutex<State>,
    readable: Notify,
    writable: Notify,
    capacity: usize,
}

struct State {
    items: VecDeque<SseItem>,
    /// No writer will come any more (the transport is gone).
    closed: bool,
    /// The server ended the stream (204): readers stop waiting once it is empty.
    ended: bool,
    writer_waiting: bool,
}

/// What one step of [`Inbox::push`] moved.
pub(crate) struct Moved {
    pub(crate) events: u64,
    pub(crate) last_id: Option<Arc<str>>,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
                ended: false,
                writer_waiting: false,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
            capacity,
        }
    }

    /// Moves every item of `batch` in, in order, waiting for room when full; calls
    /// `moved` after each step with what it moved (so an abort while waiting leaves
    /// the caller's bookkeeping exact). False when the inbox is closed.
    pub(crate) async fn push(
        &self,
        batch: &mut VecDeque<SseItem>,
        mut moved: impl FnMut(Moved),
    ) -> bool {
        while !batch.is_empty() {
            let writable = self.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            let step = {
                let mut s = self.state.lock();
                if s.closed {
                    return false;
                }
                let room = self.capacity.saturating_sub(s.items.len());
                let mut step = Moved {
                    events: 0,
                    last_id: None,
                };
                for item in batch.drain(..room.min(batch.len())) {
                    if let SseItem::Event(e) = &item {
                        step.events += 1;
                        step.last_id = Some(e.id_shared().clone());
                    }
                    s.items.push_back(item);
                }
                s.writer_waiting = !batch.is_empty();
                step
            };
            self.readable.notify_waiters();
            moved(step);
            if !batch.is_empty() {
                writable.await;
            }
        }
        true
    }

    /// Takes the next item if there is one.
    pub(crate) fn pop(&self) -> Option<SseItem> {
        let (item, wake) = {
            let mut s = self.state.lock();
            let item = s.items.pop_front();
            let wake = s.writer_waiting && s.items.len() <= self.capacity / 2;
            if wake {
                s.writer_waiting = false;
            }
            (item, wake)
        };
        if wake {
            self.writable.notify_waiters();
        }
        item
    }

    /// The next item, waiting for one; `None` once closed or ended and empty.
    pub(crate) async fn recv(&self) -> Option<SseItem> {
        loop {
            let readable = self.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            if let Some(item) = self.pop() {
                return Some(item);
            }
            {
                let s = self.state.lock();
                if s.closed || s.ended {
                    return None;
                }
            }
            readable.await;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }

    pub(crate) fn set_ended(&self, ended: bool) {
        self.state.lock().ended = ended;
        if ended {
            self.readable.notify_waiters();
        }
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.state.lock().ended
    }
}
