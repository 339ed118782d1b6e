//! What the heap holds per pending call (memory modes): a counting global
//! allocator, switched on at the start of a memory-mode client only (a
//! relaxed load per allocation otherwise), counts live bytes and live
//! blocks per size class. The memory mode reads it before the first call
//! and once every call is pending: the difference, divided by the calls, is
//! the heap each pending call holds, and its size classes say which
//! objects these are (e.g. one 96-byte block per call is a oneshot
//! channel's shared state).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

/// Size classes of 16 bytes up to [`LARGE`]; larger blocks share one class.
const CLASS: usize = 16;
const LARGE: usize = 4096;
const CLASSES: usize = LARGE / CLASS + 1;

static ON: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicI64 = AtomicI64::new(0);
static BLOCKS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

/// The bench binary's allocator: the system's, counted when switched on.
pub(crate) struct Counting;

fn class(size: usize) -> usize {
    if size > LARGE {
        CLASSES - 1
    } else {
        size.div_ceil(CLASS).max(1) - 1
    }
}

fn count(size: usize, sign: i64) {
    if ON.load(Relaxed) {
        BYTES.fetch_add(sign * size as i64, Relaxed);
        BLOCKS[class(size)].fetch_add(sign, Relaxed);
    }
}

// The one place the workspace allows `unsafe` (Cargo.toml's lints): a
// global allocator cannot be written without it.
// SAFETY: every call is forwarded to `System` unchanged; counting only
// touches atomics and never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting (before anything of the run is allocated).
pub(crate) fn switch_on() {
    ON.store(true, Relaxed);
}

/// The live heap at one moment.
pub(crate) struct Snapshot {
    bytes: i64,
    blocks: Vec<i64>,
}

pub(crate) fn snapshot() -> Snapshot {
    Snapshot {
        bytes: BYTES.load(Relaxed),
        blocks: BLOCKS.iter().map(|b| b.load(Relaxed)).collect(),
    }
}

impl Snapshot {
    /// Live heap bytes per call gained since `before`, and the size classes
    /// that gained at least one block per 20 calls, largest share first:
    /// `"≤96 B ×1.00"` is one block of 81–96 bytes per call.
    pub(crate) fn per_call(&self, before: &Snapshot, calls: u64) -> (f64, String) {
        let calls = calls.max(1) as f64;
        let bytes = (self.bytes - before.bytes) as f64 / calls;
        let mut items: Vec<(usize, f64)> = self
            .blocks
            .iter()
            .zip(&before.blocks)
            .enumerate()
            .map(|(class, (now, then))| (class, (now - then) as f64 / calls))
            .filter(|&(_, per_call)| per_call >= 0.05)
            .collect();
        items.sort_by(|a, b| {
            let share = |&(class, n): &(usize, f64)| n * ((class + 1) * CLASS) as f64;
            share(b).total_cmp(&share(a))
        });
        let items = items
            .iter()
            .map(|&(class, n)| {
                if class == CLASSES - 1 {
                    format!(">{LARGE} B ×{n:.2}")
                } else {
                    format!("≤{} B ×{n:.2}", (class + 1) * CLASS)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        (bytes, items)
    }
}
