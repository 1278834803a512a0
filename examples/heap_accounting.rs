//! Live heap bytes by owner, so a benchmark can tell the engine's memory
//! from the simulated fleet's in one process. Every allocation carries its
//! owner in a header in front of it: whoever frees it later (the engine
//! freeing an uplink the fleet made) takes the bytes off the right count.
//! The owner is the fleet (or the benchmark's own records) while
//! [`as_fleet`] runs, the engine otherwise. A block counts with what the
//! allocator really gave it (its size class and the header), so an owner
//! of many small blocks is not undercounted.

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// mimalloc (as the `airlift` binary runs), with the bytes counted.
pub struct Accounted;

const ENGINE: u8 = 0;
const FLEET: u8 = 1;

static LIVE: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];

thread_local! {
    static OWNER: Cell<u8> = const { Cell::new(ENGINE) };
}

/// Run `f` with what it allocates counted as the fleet's.
pub fn as_fleet<R>(f: impl FnOnce() -> R) -> R {
    let before = OWNER.with(|o| o.replace(FLEET));
    let r = f();
    OWNER.with(|o| o.set(before));
    r
}

/// [`as_fleet`] for a future: each of its polls counts as the fleet's.
pub async fn as_fleet_async<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| as_fleet(|| f.as_mut().poll(cx))).await
}

/// Live heap bytes: (engine, fleet).
pub fn live() -> (u64, u64) {
    let get = |i: usize| LIVE[i].load(Ordering::Relaxed).max(0) as u64;
    (get(ENGINE as usize), get(FLEET as usize))
}

/// The header: room for the owner byte, keeping the caller's alignment.
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

/// The block as allocated: `size` bytes after the header. None when that
/// is too large to allocate at all.
fn with_header(layout: Layout, size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(header(layout))?, header(layout)).ok()
}

unsafe impl GlobalAlloc for Accounted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.alloc_with(layout, |l| MiMalloc.alloc(l)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { self.alloc_with(layout, |l| MiMalloc.alloc_zeroed(l)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            let base = ptr.sub(header(layout));
            LIVE[*ptr.sub(1) as usize].fetch_sub(MiMalloc.usable_size(base) as isize, Ordering::Relaxed);
            // It was allocated with this layout, so it exists.
            let block = Layout::from_size_align_unchecked(layout.size() + header(layout), header(layout));
            MiMalloc.dealloc(base, block);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            let h = header(layout);
            let owner = *ptr.sub(1);
            let old_size = MiMalloc.usable_size(ptr.sub(h));
            let Some(grown) = with_header(layout, new_size) else { return std::ptr::null_mut() };
            let block = Layout::from_size_align_unchecked(layout.size() + h, h);
            let base = MiMalloc.realloc(ptr.sub(h), block, grown.size());
            if base.is_null() {
                return base;
            }
            LIVE[owner as usize].fetch_add(MiMalloc.usable_size(base) as isize - old_size as isize, Ordering::Relaxed);
            base.add(h)
        }
    }
}

impl Accounted {
    unsafe fn alloc_with(&self, layout: Layout, alloc: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
        let Some(block) = with_header(layout, layout.size()) else { return std::ptr::null_mut() };
        let base = alloc(block);
        if base.is_null() {
            return base;
        }
        let owner = OWNER.try_with(|o| o.get()).unwrap_or(ENGINE);
        LIVE[owner as usize].fetch_add(unsafe { MiMalloc.usable_size(base) } as isize, Ordering::Relaxed);
        unsafe {
            let ptr = base.add(header(layout));
            *ptr.sub(1) = owner;
            ptr
        }
    }
}
