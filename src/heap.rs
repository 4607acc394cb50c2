//! The heap: the process's allocator ([`Allocator`]: the system's, with freed over-aligned
//! blocks kept per thread), giving freed memory back to the system after bursts
//! ([`trim_periodically`]), and keeping the one large block every connection needs — its
//! task's state — for the next connection ([`Recycled`]). Imports nothing of tether's.
//!
//!
//! Opening a WebSocket briefly costs tens of KiB (hyper's read and write buffers on both
//! sides); once it is a tunnel it costs about one. After a burst of thousands of upgrades,
//! glibc keeps the freed buffers' pages: they sit between long-lived allocations, below the
//! top of the heap, where `free` never returns anything. An idle tunnel would then cost twice
//! what it holds. `malloc_trim(0)` releases every whole free page wherever it is (HAProxy
//! trims for the same reason). It walks the free lists, so it runs only when a sizeable amount
//! was freed since the last trim, at most once per period, off the request path.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Duration;

mod aligned;

pub use aligned::Allocator;

/// Every binary built on tether's library (tether itself, its tests and benchmarks) allocates
/// through [`Allocator`].
#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// How often the free heap is looked at.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Freed heap below this is not worth a trim (a busy proxy reuses it within milliseconds).
pub const WORTH_TRIMMING: usize = 1 << 20;

/// Trims the heap every `period` when enough was freed since the last trim. Runs until the
/// runtime stops; a no-op task where the allocator is not glibc's.
pub async fn trim_periodically(period: Duration, worth: usize) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut policy = TrimPolicy::new(worth);
    loop {
        ticks.tick().await;
        if let Some(free) = free_bytes()
            && policy.should_trim(free)
        {
            trim();
        }
    }
}

/// When a trim is worth it. The allocator's free total does not drop when a trim hands pages
/// back (the chunks stay free, just unbacked), so "a lot is free" alone would trim every period
/// forever. What calls for a trim is memory freed *since* the last one: the free total rising
/// `worth` above the lowest it was meanwhile (pages reused, then freed again).
#[derive(Debug)]
pub struct TrimPolicy {
    worth: usize,
    /// The lowest free total seen since the last trim.
    low: usize,
}

impl TrimPolicy {
    /// A policy that trims once `worth` bytes were freed since the last trim.
    pub fn new(worth: usize) -> TrimPolicy {
        TrimPolicy { worth, low: 0 }
    }

    /// Takes the current free total; true when a trim should run now.
    pub fn should_trim(&mut self, free: usize) -> bool {
        self.low = self.low.min(free);
        if free - self.low < self.worth {
            return false;
        }
        self.low = free;
        true
    }
}

/// Bytes the allocator holds free, when it can tell.
pub fn free_bytes() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics; it has no preconditions.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns every whole free page of the heap to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Blocks a thread keeps for the next [`Recycled`] value (a burst's worth is given back to the
/// allocator as usual; these few, ~10 KiB each for a connection, stay).
const SPARE_BLOCKS: usize = 8;

/// The blocks freed on this thread, with their layouts, for the next [`Recycled::new`] of the
/// same layout.
struct Spares {
    blocks: Vec<(Layout, NonNull<u8>)>,
}

impl Drop for Spares {
    fn drop(&mut self) {
        for (layout, block) in self.blocks.drain(..) {
            // SAFETY: every block here was allocated by the global allocator with `layout`
            // and is owned by this list alone.
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static SPARES: RefCell<Spares> = const { RefCell::new(Spares { blocks: Vec::new() }) };
}

/// A value on the heap, like a `Box`, whose block goes back to a small per-thread list when it
/// is dropped and is taken from there by the next one of its layout. For the state of each
/// connection's task (~10 KiB): glibc serves blocks that size from its large-chunk path —
/// bins searched, and the small-chunk caches consolidated at every such request — ~0.8k
/// instructions per connection for malloc and free, against a list's push and pop.
pub struct Recycled<T> {
    value: NonNull<T>,
    /// Owns a `T` (and drops it), for the drop check.
    _owns: PhantomData<T>,
}

// Moving the holder moves a pointer, never the value: pinning the holder pins nothing.
impl<T> Unpin for Recycled<T> {}

// SAFETY: a `Recycled<T>` owns its `T` as a `Box<T>` does; the block itself may be freed on
// any thread (it goes to that thread's list).
unsafe impl<T: Send> Send for Recycled<T> {}

impl<T> Recycled<T> {
    /// Moves `value` into a block (a spare one of its layout when this thread has one). A
    /// large value is better built in place: [`Recycled::new_uninit`], then [`Recycled::write`].
    pub fn new(value: T) -> Recycled<T> {
        Recycled::write(Recycled::new_uninit(), value)
    }

    /// A block for a `T` (a spare one of its layout when this thread has one), not yet written.
    #[inline(always)]
    pub fn new_uninit() -> Recycled<MaybeUninit<T>> {
        let layout = Layout::new::<T>();
        let block = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take_block(layout).cast()
        };
        Recycled {
            value: block,
            _owns: PhantomData,
        }
    }

    /// Writes `value` into the block: taken first and written here, a large value is built in
    /// its block, where built first and moved in it would be copied whole once.
    #[inline(always)]
    pub fn write(block: Recycled<MaybeUninit<T>>, value: T) -> Recycled<T> {
        let written = block.value.cast::<T>();
        // The block now belongs to the written value (a `MaybeUninit` has nothing to drop).
        std::mem::forget(block);
        // SAFETY: the block is valid for writes of a `T` and aligned for it (its layout is
        // `T`'s), and nothing else refers to it.
        unsafe { written.as_ptr().write(value) };
        Recycled {
            value: written,
            _owns: PhantomData,
        }
    }
}

/// A spare block of `layout` from this thread's list, else a new one.
fn take_block(layout: Layout) -> NonNull<u8> {
    let spare = SPARES
        .try_with(|spares| {
            let mut spares = spares.borrow_mut();
            match spares.blocks.last() {
                Some((kept, _)) if *kept == layout => spares.blocks.pop().map(|(_, block)| block),
                _ => None,
            }
        })
        .ok()
        .flatten();
    spare.unwrap_or_else(|| {
        // SAFETY: `layout` has a non-zero size (checked by the caller).
        let block = unsafe { alloc(layout) };
        NonNull::new(block).unwrap_or_else(|| handle_alloc_error(layout))
    })
}

/// Keeps `block` for the next value of its layout, or frees it when the list is full (or the
/// thread is going away).
fn give_back(block: NonNull<u8>, layout: Layout) {
    let kept = SPARES.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.blocks.len() >= SPARE_BLOCKS {
            return false;
        }
        spares.blocks.push((layout, block));
        true
    });
    if kept != Ok(true) {
        // SAFETY: the block was allocated by the global allocator with `layout`, and its value
        // was dropped: nothing refers to it.
        unsafe { dealloc(block.as_ptr(), layout) };
    }
}

impl<T> Drop for Recycled<T> {
    fn drop(&mut self) {
        // SAFETY: the value was written in `new` and is dropped only here, once.
        unsafe { self.value.as_ptr().drop_in_place() };
        let layout = Layout::new::<T>();
        if layout.size() != 0 {
            give_back(self.value.cast(), layout);
        }
    }
}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future never moves out of its block while it lives (only the pointer to
        // it moves), which is what pinning asks; it is dropped in place.
        let future = unsafe { Pin::new_unchecked(&mut *self.value.as_ptr()) };
        future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block comes back to the next value of its layout on the same thread, its value is
    /// dropped when the holder is, and a full list frees the rest.
    #[test]
    fn a_dropped_values_block_is_the_next_ones_and_the_value_is_dropped() {
        use std::sync::Arc;
        let counted = Arc::new(());
        let first = Recycled::new([Some(counted.clone()), None, None, None]);
        let address = first.value.as_ptr() as usize;
        drop(first);
        assert_eq!(Arc::strong_count(&counted), 1, "the value was dropped");
        let second = Recycled::new([None, Some(counted.clone()), None, None]);
        assert_eq!(
            second.value.as_ptr() as usize,
            address,
            "the block was reused"
        );
        // More at once than the list keeps: every one is freed or kept, none lost or doubled.
        let many: Vec<_> = (0..SPARE_BLOCKS * 2)
            .map(|_| Recycled::new([Some(counted.clone()), None, None, None]))
            .collect();
        assert_eq!(Arc::strong_count(&counted), 2 + SPARE_BLOCKS * 2);
        drop(many);
        drop(second);
        assert_eq!(Arc::strong_count(&counted), 1);
        let kept = SPARES.with(|spares| spares.borrow().blocks.len());
        assert_eq!(kept, SPARE_BLOCKS);
    }

    #[test]
    fn a_recycled_future_runs_to_its_output() {
        let future = Recycled::new(async { 7 });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(future), 7);
    }

    #[test]
    fn trims_once_per_burst_of_freed_memory_not_every_period() {
        let mut policy = TrimPolicy::new(100);
        assert!(!policy.should_trim(50), "too little freed");
        assert!(policy.should_trim(150), "a burst freed");
        assert!(
            !policy.should_trim(150),
            "nothing freed since: no second trim"
        );
        assert!(!policy.should_trim(160));
        // Reused (free drops), then freed again: a new burst.
        assert!(!policy.should_trim(20));
        assert!(!policy.should_trim(90));
        assert!(policy.should_trim(130));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_returns_the_pages_of_freed_buffers_pinned_below_live_allocations() {
        // Thousands of 16 KiB buffers, each followed by a small allocation that stays: the
        // pattern a burst of upgrades leaves behind. Freeing the buffers returns nothing by
        // itself, as live allocations sit above them.
        let mut kept = Vec::new();
        let mut buffers = Vec::new();
        for _ in 0..2_000 {
            buffers.push(vec![1u8; 16 * 1024]);
            kept.push(Box::new([2u8; 64]));
        }
        drop(buffers);
        let free = free_bytes().unwrap();
        assert!(free >= 16 * 1024 * 1_000, "free after the burst: {free}");
        let resident = resident_bytes();
        trim();
        let released = resident.saturating_sub(resident_bytes());
        assert!(
            released >= 16 * 1024 * 1_000,
            "released {released} of {free} free bytes"
        );
        assert!(kept.iter().all(|small| small[0] == 2));
    }

    fn resident_bytes() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}
