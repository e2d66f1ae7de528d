//! Software prefetch hints for lookups whose addresses are known before they are needed.

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
