//! Gives freed heap memory back to the system after bursts.
//!
//! Opening a WebSocket briefly costs tens of KiB (hyper's read and write buffers on both
//! sides); once it is a tunnel it costs about one. After a burst of thousands of upgrades,
//! glibc keeps the freed buffers' pages: they sit between long-lived allocations, below the
//! top of the heap, where `free` never returns anything. An idle tunnel would then cost twice
//! what it holds. `malloc_trim(0)` releases every whole free page wherever it is (HAProxy
//! trims for the same reason). It walks the free lists, so it runs only when a sizeable amount
//! was freed since the last trim, at most once per period, off the request path.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
