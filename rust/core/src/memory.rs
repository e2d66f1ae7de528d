//! Memory hints: software prefetches for lookups whose addresses are known before they are
//! needed (the next text of a batch among them), and huge pages for large tables read at random,
//! shared memory included (`HugePageAlias`).

/// Asks the processor to bring `value`'s cache line closer; a no-op off x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_address(value as *const T);
}

/// Asks the processor to bring the cache line at `address` closer; a no-op off x86-64. The
/// address is never dereferenced, so any pointer will do.
#[inline(always)]
pub fn prefetch_address<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// How much of the next text [`prefetching_next`] fetches ahead: the hardware prefetcher
/// follows a text once its first lines have been read.
const TEXT_AHEAD_BYTES: usize = 512;

/// The items of `texts` in order, each handed out after the first bytes of the one after it
/// have been prefetched. Texts in allocations of their own (Python `str` objects, for one) lie
/// scattered in memory, where the hardware prefetcher cannot guess where the next one starts;
/// counting `raw_pool`'s n-grams from a Python list got 1.035x faster (2 threads, 8 alternating
/// rounds), while texts that lie one after the other gained nothing.
pub(crate) fn prefetching_next<D: AsRef<str>>(texts: &[D]) -> impl Iterator<Item = &D> {
    texts.iter().enumerate().map(|(i, text)| {
        if let Some(next) = texts.get(i + 1) {
            prefetch_text_start(next.as_ref());
        }
        text
    })
}

/// Prefetches the first bytes of `text` (see [`prefetching_next`]).
#[inline(always)]
pub(crate) fn prefetch_text_start(text: &str) {
    let bytes = text.as_bytes();
    for line in (0..bytes.len().min(TEXT_AHEAD_BYTES)).step_by(64) {
        prefetch(&bytes[line]);
    }
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
    advise_whole_huge_pages(values, libc::MADV_HUGEPAGE);
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

/// 2 MiB, the x86-64 and arm64 huge page.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// `madvise(advice)` on the 2 MiB pages that lie wholly inside `values`.
#[cfg(target_os = "linux")]
fn advise_whole_huge_pages<T>(values: &[T], advice: libc::c_int) {
    let start = values.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + std::mem::size_of_val(values)) / HUGE * HUGE;
    if end > first {
        // SAFETY: the range lies inside `values`; the advice only changes how the kernel backs
        // it, never its contents (failing advice is harmless and ignored).
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, advice);
        }
    }
}

/// A second, read-only mapping of bytes in shared memory, on 2 MiB pages.
///
/// Shared memory (the files in `/dev/shm` that Ray's object store maps into every worker) gets
/// 4 KiB pages from Linux (`shmem_enabled` is `never` by default), and a process maps it wherever
/// the kernel chooses: at an address not congruent with the file offset modulo 2 MiB, its pages
/// cannot become 2 MiB pages at all. A fastText matrix of 2.3 GB read at random from 4 KiB
/// pages predicted 1.35x slower than from the model's own. The alias maps the same pages again
/// (`mremap` with an old size of 0, which duplicates a shared mapping) at a congruent address
/// and moves them onto 2 MiB pages (`MADV_COLLAPSE`, Linux 6.1+, whatever the settings); the
/// pages are the file's, so every process mapping them gains.
#[derive(Debug)]
pub(crate) struct HugePageAlias {
    /// The mapping: `size` bytes from `base`.
    base: usize,
    size: usize,
    /// The aliased bytes: `len` bytes from `start`, inside the mapping.
    start: usize,
    len: usize,
}

// SAFETY: the alias is a read-only mapping that only `Drop` unmaps.
unsafe impl Send for HugePageAlias {}
unsafe impl Sync for HugePageAlias {}

impl HugePageAlias {
    /// The alias of `bytes`, or `None` off Linux, if they do not lie in one shared mapping, or if
    /// the kernel refuses. The caller keeps the memory holding `bytes` alive and unchanged for as
    /// long as the alias lives (the alias keeps the file mapped, not its contents in place).
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            Self::map(bytes)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = bytes;
            None
        }
    }

    /// The aliased bytes, equal to those given to [`new`](Self::new).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `start..start + len` lies inside the mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.len) }
    }

    #[cfg(target_os = "linux")]
    fn map(bytes: &[u8]) -> Option<Self> {
        const PAGE: usize = 4096;
        if bytes.is_empty() {
            return None;
        }
        let start = bytes.as_ptr() as usize;
        let first_page = start / PAGE * PAGE;
        let size = (start + bytes.len()).next_multiple_of(PAGE) - first_page;
        let file_offset = shared_file_offset(first_page, first_page + size)?;
        // Reserve room for the alias at an address congruent with the file offset.
        // SAFETY: a fresh anonymous mapping, inaccessible, at an address the kernel picks.
        let reserved = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size + HUGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if reserved == libc::MAP_FAILED {
            return None;
        }
        let reserved = reserved as usize;
        let base = reserved + file_offset.wrapping_sub(reserved) % HUGE;
        // SAFETY: duplicates the shared pages of `first_page..first_page + size` over part of our
        // own reservation (MREMAP_FIXED replaces what is there); the original stays as it is.
        let alias = unsafe {
            libc::mremap(
                first_page as *mut libc::c_void,
                0,
                size,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                base as *mut libc::c_void,
            )
        };
        // SAFETY: unmaps the parts of our reservation that the alias does not cover (or all of it).
        let unmap = |from: usize, to: usize| unsafe {
            if to > from {
                libc::munmap(from as *mut libc::c_void, to - from);
            }
        };
        unmap(reserved, base);
        unmap(base + size, reserved + size + HUGE);
        if alias == libc::MAP_FAILED {
            unmap(base, base + size);
            return None;
        }
        // SAFETY: our own mapping; reading is all it is for.
        unsafe { libc::mprotect(base as *mut libc::c_void, size, libc::PROT_READ) };
        let alias = HugePageAlias { base, size, start: base + (start - first_page), len: bytes.len() };
        /// The Linux value (`uapi/asm-generic/mman-common.h`), not in `libc` for every target.
        const MADV_COLLAPSE: libc::c_int = 25;
        advise_whole_huge_pages(alias.bytes(), MADV_COLLAPSE);
        Some(alias)
    }
}

impl Drop for HugePageAlias {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping is ours, and the borrow of `bytes()` has ended.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
    }
}

/// The file offset of `start` if `start..end` lies in one shared (`MAP_SHARED`) mapping of this
/// process, from `/proc/self/maps`.
#[cfg(target_os = "linux")]
fn shared_file_offset(start: usize, end: usize) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        // "7f0b64000000-7f0c24000000 rw-s 00000000 00:1a 12345 /dev/shm/plasma (deleted)"
        let mut fields = line.split_whitespace();
        let (from, to) = fields.next()?.split_once('-')?;
        let (from, to) = (usize::from_str_radix(from, 16).ok()?, usize::from_str_radix(to, 16).ok()?);
        let shared = fields.next()?.ends_with('s');
        let offset = usize::from_str_radix(fields.next()?, 16).ok()?;
        (from <= start && end <= to && shared).then(|| offset + (start - from))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A shared anonymous mapping (shared memory, as `/dev/shm` files are) of `len` bytes.
    struct SharedMemory(*mut u8, usize);

    impl SharedMemory {
        fn new(len: usize) -> Self {
            // SAFETY: a fresh shared anonymous mapping.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            SharedMemory(p.cast(), len)
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is ours, `len` bytes long.
            unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
        }
    }

    impl Drop for SharedMemory {
        fn drop(&mut self) {
            // SAFETY: our mapping.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    #[test]
    fn an_alias_of_shared_memory_sees_the_same_pages_at_a_congruent_address() {
        let mut shared = SharedMemory::new(9 << 20);
        for (i, b) in shared.bytes().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        // An unaligned range, as an object inside Ray's store is.
        let (from, to) = (4096 + 100, (9 << 20) - 7);
        let alias = HugePageAlias::new(&shared.bytes()[from..to]).expect("an alias of shared memory");
        assert_eq!(alias.bytes(), &shared.bytes()[from..to]);
        assert_ne!(alias.bytes().as_ptr(), shared.bytes()[from..].as_ptr());
        // Same pages: a write through the original shows in the alias.
        shared.bytes()[from + 5] ^= 0xff;
        assert_eq!(alias.bytes()[5], shared.bytes()[from + 5]);
        // Congruent with the file offset (here `from`: the mapping starts at offset 0) modulo 2 MiB.
        assert_eq!((alias.bytes().as_ptr() as usize).wrapping_sub(from) % HUGE, 0);
    }

    #[test]
    fn private_memory_gets_no_alias() {
        let private = vec![7u8; 3 << 20];
        assert!(HugePageAlias::new(&private).is_none());
        assert!(HugePageAlias::new(&[]).is_none());
    }
}
