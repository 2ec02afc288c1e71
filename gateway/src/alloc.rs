//! The global allocator: mimalloc, called the way it is fast.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to
//! `mi_malloc_aligned(size, align)`. In mimalloc v3 that call takes its fast
//! path only while the size class's current page has a free block; otherwise
//! it falls to `mi_theap_malloc_zero_aligned_at_generic`, which uses plain
//! malloc only for power-of-two block sizes. Every other size (24, 48, 80,
//! ... bytes: most Rust allocations) is over-allocated by `align - 1` bytes
//! into a larger size class, and its page is marked as holding interior
//! pointers, which slows every free from it. Under callgrind that was 2.6
//! such calls and ~940 instructions of allocator per admission (5 % of the
//! request path).
//!
//! A block from plain `mi_malloc(size)` is already aligned to `align`
//! whenever `align <= 16` and `size` is a non-zero multiple of `align`: the
//! first block of a page is 16-byte aligned, the block sizes of mimalloc's
//! size classes are whole words, and mimalloc itself asserts that blocks of
//! 16 bytes or more are 16-byte aligned (`_mi_page_malloc_zero` in
//! `alloc.c` of the pinned `libmimalloc-sys` 0.1.49, mimalloc v3). Rust
//! layouts of sized types always have a size that is a multiple of their
//! alignment, so almost every request goes the plain way; the rest (larger
//! alignments, odd raw layouts) still go to the aligned functions. The test
//! below allocates every size up to 1 KiB and every eighth up to 4 KiB for
//! alignments 1 to 4096 and checks each block; it fails if the size
//! condition is dropped. The `libmimalloc-sys` version is pinned because
//! this relies on how mimalloc lays out its pages; re-run the test when
//! moving it.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Largest alignment a plain `mi_malloc` block of a multiple-of-alignment
/// size is guaranteed to have (mimalloc's `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN_MAX: usize = 16;

/// mimalloc as a Rust global allocator, using the unaligned entry points
/// where they give the requested alignment anyway.
pub struct MiMalloc;

#[inline]
fn plain(size: usize, align: usize) -> bool {
    // `align` is a power of two (a `Layout` guarantees it).
    align <= PLAIN_ALIGN_MAX && size >= align && size & (align - 1) == 0
}

// SAFETY: every method forwards to the mimalloc function for the same
// operation; `plain` only picks the unaligned variant where it returns
// memory aligned as requested (module doc, and `alignment_holds`). mimalloc
// frees and reallocates blocks from either variant.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions have no preconditions.
        let p: *mut u8 = unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        };
        debug_assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator returned; the
        // new block has the old alignment (chosen on the new size).
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 1 KiB and every eighth up to 4 KiB, for every
    /// alignment up to 16 and some larger ones (both paths): many live
    /// blocks at once so that pages fill and new ones start, then
    /// reallocations across size classes. Fails if `plain` takes sizes
    /// that are not a multiple of the alignment.
    #[test]
    fn alignment_holds() {
        let a = MiMalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            let mut live = Vec::new();
            for size in (1..=1024).chain((1032..=4096).step_by(8)) {
                for _ in 0..16 {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: non-zero size; freed below with the same layout.
                    let p = unsafe { a.alloc(layout) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    // SAFETY: `p` is a live block of `size` bytes.
                    unsafe { p.write_bytes(0xa5, size) };
                    live.push((p, layout));
                }
            }
            for (p, layout) in live.drain(..) {
                let new_size = layout.size() * 3;
                // SAFETY: `p` is live with `layout`; the new size is non-zero.
                let q = unsafe { a.realloc(p, layout, new_size) };
                assert!(!q.is_null());
                assert_eq!(q as usize % layout.align(), 0);
                // SAFETY: the old contents were kept up to the old size.
                assert_eq!(unsafe { *q.add(layout.size() - 1) }, 0xa5);
                let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                // SAFETY: `q` is live with `new_layout`.
                unsafe { a.dealloc(q, new_layout) };
            }
        }
    }

    #[test]
    fn zeroed_is_zero() {
        let a = MiMalloc;
        for (size, align) in [(24, 8), (48, 16), (1000, 8), (64, 64), (3, 1)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: dirty a block first so a reused block would show.
            unsafe {
                let p = a.alloc(layout);
                p.write_bytes(0xff, size);
                a.dealloc(p, layout);
                let z = a.alloc_zeroed(layout);
                assert_eq!(z as usize % align, 0);
                assert!((0..size).all(|i| *z.add(i) == 0));
                a.dealloc(z, layout);
            }
        }
    }
}
