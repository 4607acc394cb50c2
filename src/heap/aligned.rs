//! The process's allocator: the system's (glibc's malloc), with a small per-thread cache in
//! front of it for blocks aligned beyond what malloc aligns by itself. Imports nothing of
//! tether's.
//!
//! tokio aligns each task's cell and each socket's readiness record to 128 bytes (against
//! false sharing); a new connection makes one of each and frees both when it ends. glibc
//! serves such a request through `posix_memalign`, which allocates more than asked, trims the
//! ends and frees them again — ~0.6k instructions a block, where a malloc from its per-thread
//! cache costs ~0.05k — and its own cache never serves an aligned request. Here a freed
//! aligned block waits in a per-thread list for the next request of its exact size and
//! alignment. Everything else goes straight to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;

/// What malloc aligns every block to on 64-bit glibc: requests up to this go straight to it.
const MALLOC_ALIGN: usize = 16;
/// Blocks larger than this are not kept (tokio's are a few hundred bytes).
const LARGEST_KEPT: usize = 1024;
/// Distinct (size, alignment) pairs a thread keeps blocks of.
const CLASSES: usize = 4;
/// Blocks kept per pair; more are freed.
const DEPTH: usize = 16;

/// The allocator tether runs on: [`System`], with freed over-aligned blocks kept per thread
/// for the next request of their layout.
pub struct Allocator;

// SAFETY: every block handed out is one the system allocator allocated with exactly the
// layout asked for (a kept block is reused only for its own size and alignment), and every
// block is either kept or given back to the system allocator with its layout, never both.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_kept(layout)
            && let Some(block) = take(layout)
        {
            return block;
        }
        // SAFETY: the caller's promises about `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_kept(layout) && keep(block, layout) {
            return;
        }
        // SAFETY: `block` came from the system allocator with `layout` (see `alloc`).
        unsafe { System.dealloc(block, layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_kept(layout) {
            // SAFETY: as `alloc`; the block is zeroed before it is handed out.
            let block = unsafe { self.alloc(layout) };
            if !block.is_null() {
                // SAFETY: the block is valid for `layout.size()` bytes of writes.
                unsafe { block.write_bytes(0, layout.size()) };
            }
            return block;
        }
        // SAFETY: the caller's promises about `layout` are passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: a block of at most malloc's alignment is never kept: it is the system
            // allocator's, with `layout`.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // Over-aligned (rare): a new block, the bytes copied, the old one freed — each step
        // through this allocator, so a kept block is never handed to the system's realloc.
        // SAFETY: the caller promises `new_size` with `layout.align()` is a valid layout.
        let grown = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let moved = unsafe { self.alloc(grown) };
        if !moved.is_null() {
            // SAFETY: both blocks are valid for the smaller size, and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

/// Whether blocks of `layout` go through the per-thread lists.
#[inline]
fn is_kept(layout: Layout) -> bool {
    layout.align() > MALLOC_ALIGN && layout.size() <= LARGEST_KEPT
}

/// The blocks one thread keeps, by (size, alignment).
struct Kept {
    classes: [Class; CLASSES],
}

/// Blocks of one (size, alignment); a class with `size` 0 is unused.
struct Class {
    size: usize,
    align: usize,
    count: usize,
    blocks: [*mut u8; DEPTH],
}

impl Class {
    const EMPTY: Class = Class {
        size: 0,
        align: 0,
        count: 0,
        blocks: [std::ptr::null_mut(); DEPTH],
    };

    fn is(&self, layout: Layout) -> bool {
        self.size == layout.size() && self.align == layout.align()
    }
}

impl Drop for Kept {
    /// A thread that ends gives its kept blocks back to the system allocator.
    fn drop(&mut self) {
        for class in &mut self.classes {
            if class.size == 0 {
                continue;
            }
            // SAFETY: the class's size and alignment were taken from a valid `Layout`.
            let layout = unsafe { Layout::from_size_align_unchecked(class.size, class.align) };
            for &block in &class.blocks[..class.count] {
                // SAFETY: each kept block came from the system allocator with this layout.
                unsafe { System.dealloc(block, layout) };
            }
            class.count = 0;
        }
    }
}

thread_local! {
    // Const-initialised and never allocating: reachable from inside the allocator. (Its
    // destructor is registered with the C library's thread-exit list, which does not come
    // back here.)
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept {
            classes: [Class::EMPTY, Class::EMPTY, Class::EMPTY, Class::EMPTY],
        })
    };
}

/// A kept block of exactly `layout`, if this thread has one.
#[inline]
fn take(layout: Layout) -> Option<*mut u8> {
    KEPT.try_with(|kept| {
        // Busy or gone (a thread's end): the system allocator serves.
        let mut kept = kept.try_borrow_mut().ok()?;
        let class = kept.classes.iter_mut().find(|class| class.is(layout))?;
        if class.count == 0 {
            return None;
        }
        class.count -= 1;
        Some(class.blocks[class.count])
    })
    .ok()
    .flatten()
}

/// Keeps `block` of `layout` on this thread; false when there is no room (or no thread-local
/// storage left), and then the caller frees it.
#[inline]
fn keep(block: *mut u8, layout: Layout) -> bool {
    KEPT.try_with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return false;
        };
        let slot = match kept.classes.iter().position(|class| class.is(layout)) {
            Some(known) => known,
            None => match kept.classes.iter().position(|class| class.size == 0) {
                Some(free) => {
                    let class = &mut kept.classes[free];
                    (class.size, class.align) = (layout.size(), layout.align());
                    free
                }
                None => return false,
            },
        };
        let class = &mut kept.classes[slot];
        if class.count == DEPTH {
            return false;
        }
        class.blocks[class.count] = block;
        class.count += 1;
        true
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// A freed 128-aligned block is the next request of its layout, aligned, and never one of
    /// another size; more than a class keeps go back to the system.
    #[test]
    fn a_freed_aligned_block_serves_the_next_request_of_its_layout_only() {
        let allocator = Allocator;
        let cell = layout(256, 128);
        // SAFETY (whole test): layouts are valid and non-zero; each block is freed once, with
        // the layout it was allocated with.
        unsafe {
            let first = allocator.alloc(cell);
            assert!((first as usize).is_multiple_of(128));
            first.write_bytes(7, 256);
            allocator.dealloc(first, cell);
            let other = allocator.alloc(layout(384, 128));
            assert_ne!(other, first, "a block of another size was handed out");
            let again = allocator.alloc(cell);
            assert_eq!(again, first, "the freed block was not reused");
            allocator.dealloc(again, cell);
            allocator.dealloc(other, layout(384, 128));
            // Many at once: all distinct, all aligned, all freed without loss.
            let many: Vec<*mut u8> = (0..DEPTH * 3).map(|_| allocator.alloc(cell)).collect();
            let mut sorted = many.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), many.len(), "a block was handed out twice");
            assert!(
                many.iter()
                    .all(|block| (*block as usize).is_multiple_of(128))
            );
            for block in many {
                allocator.dealloc(block, cell);
            }
            let kept = KEPT.with(|kept| {
                let kept = kept.borrow();
                kept.classes
                    .iter()
                    .find(|class| class.is(cell))
                    .unwrap()
                    .count
            });
            assert_eq!(kept, DEPTH);
        }
    }

    /// A block freed on another thread is kept by that thread (whose end gives it back).
    #[test]
    fn a_block_freed_on_another_thread_is_kept_there() {
        let cell = layout(256, 128);
        // SAFETY: a valid layout; the block is freed once, with it.
        let block = unsafe { Allocator.alloc(cell) } as usize;
        std::thread::spawn(move || {
            // SAFETY: as above.
            unsafe { Allocator.dealloc(block as *mut u8, cell) };
            let count = KEPT.with(|kept| kept.borrow().classes[0].count);
            assert_eq!(count, 1);
        })
        .join()
        .unwrap();
    }

    /// Zeroed and grown over-aligned blocks are zeroed and keep their bytes.
    #[test]
    fn zeroed_and_reallocated_aligned_blocks_hold_what_they_should() {
        let allocator = Allocator;
        let cell = layout(256, 128);
        // SAFETY: valid layouts; each block freed once with its current layout.
        unsafe {
            let dirty = allocator.alloc(cell);
            dirty.write_bytes(0xAB, 256);
            allocator.dealloc(dirty, cell);
            let zeroed = allocator.alloc_zeroed(cell);
            assert!((0..256).all(|i| *zeroed.add(i) == 0));
            zeroed.write_bytes(5, 256);
            let grown = allocator.realloc(zeroed, cell, 2048);
            assert!((grown as usize).is_multiple_of(128));
            assert!((0..256).all(|i| *grown.add(i) == 5));
            allocator.dealloc(grown, layout(2048, 128));
        }
    }
}
