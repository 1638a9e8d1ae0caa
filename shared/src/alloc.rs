//! The global allocator of Waymark's binaries: mimalloc, asked through its plain `malloc` for
//! the alignments `malloc` already guarantees (as Rust's own `System` allocator does with libc),
//! and through its aligned entry points only for larger ones.
//!
//! The `mimalloc` crate's allocator calls `mi_malloc_aligned` for every allocation, whose fast
//! path is narrower (small blocks that happen to be aligned) and which costs about twice the
//! instructions of `mi_malloc` for the engine's many small strings and maps.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every `mi_malloc` block has (MI_MAX_ALIGN_SIZE on 64-bit targets).
const MALLOC_ALIGN: usize = 16;

/// mimalloc as the global allocator: `#[global_allocator] static A: Mimalloc = Mimalloc;`.
pub struct Mimalloc;

/// Whether plain `malloc` of `size` bytes already has `align`: a block is aligned to the
/// smaller of its size (rounded up to a word) and 16, as with libc's malloc.
fn plain(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: every pointer handed out comes from mimalloc with at least the layout's alignment
// (plain `mi_malloc` only when its blocks are known to have it), and goes back to `mi_free` or
// `mi_realloc*`, which accept any mimalloc pointer.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls accept any size; a null return is the caller's
        // out-of-memory signal, as GlobalAlloc requires.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; the new block keeps the layout's alignment.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_their_layouts_alignment_and_keep_their_bytes() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [align, align * 3, 24, 100, 1000, 5000, 70_000, 1 << 20] {
                let Ok(layout) = Layout::from_size_align(size.max(align), align) else {
                    continue;
                };
                // SAFETY: a non-zero layout; the block is freed with the same allocator.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xAB, layout.size());
                    let grown = a.realloc(p, layout, layout.size() * 2 + 8);
                    assert!(!grown.is_null());
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "realloc size {size} align {align}"
                    );
                    assert_eq!(*grown.add(layout.size() - 1), 0xAB);
                    a.dealloc(grown, layout);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..layout.size()).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
