//! Memory hints: software prefetches for lookups whose addresses are known before they are
//! needed, and huge pages for large tables read at random.

/// Asks the processor to bring `value`'s cache line closer; a no-op off x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Prefetches every 64-byte cache line that `values` touches (aligned or not).
#[inline(always)]
pub(crate) fn prefetch_all(values: &[f32]) {
    for i in (0..values.len()).step_by(16) {
        prefetch(&values[i]);
    }
    if let Some(last) = values.last() {
        prefetch(last);
    }
}

/// Asks Linux to back `values` with 2 MiB pages (transparent huge pages in `madvise` mode, the
/// common default); call it on a fresh `vec![0; n]`, before the pages are first written.
///
/// For tables read at random (fastText's gigabyte input matrices, its dictionary): with 4 KiB
/// pages nearly every access costs a TLB miss, and prefetches that miss the TLB are often
/// dropped. Elsewhere, or if the kernel declines, nothing changes.
pub(crate) fn advise_huge_pages<T>(values: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = values.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = (start + std::mem::size_of_val(values)) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies inside `values`; MADV_HUGEPAGE only changes how the kernel
            // backs it (failing advice is harmless and ignored).
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}
