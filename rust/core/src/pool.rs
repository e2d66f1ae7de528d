//! Thread pools owned by tokensieve (never rayon's global pool).
//!
//! The number of threads comes from an explicit argument, else `TOKENSIEVE_NUM_THREADS`, else the
//! CPU count. Pools are cached per size. After `fork()` the child has none of the parent's
//! threads, so a `pthread_atfork` child hook bumps a generation counter and the child builds
//! fresh pools on first use instead of waiting forever on dead workers.

pub use rayon::ThreadPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use crate::error::{Error, Result};

/// Environment variable read when no thread count is passed.
pub const NUM_THREADS_ENV: &str = "TOKENSIEVE_NUM_THREADS";

/// Resolves the thread count: `requested` > `TOKENSIEVE_NUM_THREADS` > the CPU count.
pub fn resolve_num_threads(requested: Option<usize>) -> Result<usize> {
    if let Some(n) = requested {
        return if n == 0 { Err(Error::invalid("num_threads must be at least 1")) } else { Ok(n) };
    }
    if let Ok(value) = std::env::var(NUM_THREADS_ENV) {
        return match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::invalid(format!("{NUM_THREADS_ENV}={value:?} is not a positive integer"))),
        };
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER_FORK_HOOK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Only an atomic store: nothing else is async-signal-safe here.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

struct PoolCache {
    generation: u64,
    pools: HashMap<usize, Arc<rayon::ThreadPool>>,
}

static POOLS: Mutex<Option<PoolCache>> = Mutex::new(None);

/// The shared pool of `num_threads` workers, built on first use (and again after a fork).
pub fn thread_pool(num_threads: usize) -> Arc<rayon::ThreadPool> {
    REGISTER_FORK_HOOK.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut cache = POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if cache.as_ref().is_some_and(|c| c.generation != generation) {
        // The workers of these pools live in the parent process only; dropping the pools would
        // wait for them, so leak them instead.
        if let Some(stale) = cache.take() {
            std::mem::forget(stale);
        }
    }
    let cache = cache.get_or_insert_with(|| PoolCache { generation, pools: HashMap::new() });
    cache
        .pools
        .entry(num_threads)
        .or_insert_with(|| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(num_threads)
                    .thread_name(|i| format!("tokensieve-{i}"))
                    .build()
                    .expect("spawning worker threads failed"),
            )
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_count_wins_and_zero_is_rejected() {
        assert_eq!(resolve_num_threads(Some(3)).unwrap(), 3);
        assert!(resolve_num_threads(Some(0)).is_err());
    }

    #[test]
    fn pools_are_cached_per_size() {
        let a = thread_pool(2);
        let b = thread_pool(2);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 2);
        assert_eq!(thread_pool(1).current_num_threads(), 1);
    }
}
