//! Records recycled per thread: a request's record, with its lines' buffers, comes back once
//! the lines are queued for the writer, and the next request on that thread takes it, so a
//! logged request allocates nothing once the thread has a few (an allocation and a free cost a
//! log line more than rendering several of its values). Std only.

use std::cell::RefCell;

use super::Record;

/// The most records a thread keeps: as many as requests that end before others begin.
const KEPT: usize = 128;

thread_local! {
    // The boxes are the point: a record is handed out boxed, and its allocation is what is kept.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Record>>> = const { RefCell::new(Vec::new()) };
}

/// An empty record this thread kept.
pub(super) fn take_record() -> Option<Box<Record>> {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
}

/// Keeps an emptied record for a later [`take_record`] on this thread (or frees it).
pub(super) fn give_record(record: Box<Record>) {
    // A thread being torn down keeps nothing.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(record);
        }
    });
}
