//! Which SIMD paths the processor can take. The hot loops dispatch on [`Simd::detected`]; the
//! tests run every level the processor has against the same references.

/// A set of instructions a SIMD path needs, from most to least capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Simd {
    /// AVX-512 F, BW (byte compares into mask registers) and DQ (a native 64-bit multiply).
    Avx512,
    Avx2,
    /// Whatever the target guarantees (SSE2 on x86-64).
    Baseline,
}

impl Simd {
    /// The most capable level this processor has (detected once, then a cached load).
    #[inline]
    pub(crate) fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") {
                return Simd::Avx512;
            }
            if has!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }

    /// Every level this processor can run, the detected one first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let all = [Simd::Avx512, Simd::Avx2, Simd::Baseline];
        let detected = all.iter().position(|&level| level == Self::detected()).expect("a known level");
        all[detected..].to_vec()
    }
}
