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

/// A zeroed vector of `len` floats whose pages are not yet touched, backed by 2 MiB pages where
/// Linux allows it (transparent huge pages in `madvise` mode, the common default).
///
/// For matrices read row by row at random (fastText's gigabyte input matrices): with 4 KiB
/// pages nearly every row costs a TLB miss, and prefetches that miss the TLB are often dropped.
pub(crate) fn huge_page_floats(len: usize) -> Vec<f32> {
    // calloc of this size maps fresh zero pages without touching them, so the advice takes
    // effect when they are first written.
    let v = vec![0f32; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = (start + std::mem::size_of_val(v.as_slice())) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies inside `v`'s allocation; MADV_HUGEPAGE only changes how the
            // kernel backs it (the advice failing is harmless and ignored).
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}
