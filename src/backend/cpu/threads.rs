//! The CPU's threads: the process's global pool (one worker per core) by default; a shared pool
//! per requested count above one; and for one thread, a one-worker pool of each calling thread's
//! own (so single-threaded sessions serving many callers run side by side, as ONNX Runtime's
//! runs with one intra-op thread do on their callers' threads). A run keeps a helper worker
//! awake between its kernels' parallel loops, backing off when it has had nothing to take for a
//! while (the core may be wanted elsewhere: another request, another stage, another process).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most threads a session may ask for.
pub const MAX_THREADS: usize = 1024;

/// Where a run's kernels run.
#[derive(Clone)]
pub enum Threads {
    /// The process's global pool.
    Global,
    /// One thread: the calling thread's own one-worker pool.
    Solo,
    /// A pool of that many workers, shared by every executable asking for the count.
    Pool(Arc<rayon::ThreadPool>),
}

impl Threads {
    pub fn new(threads: Option<usize>) -> Result<Threads> {
        match threads {
            None => Ok(Threads::Global),
            Some(n) if n == 0 || n > MAX_THREADS => Err(Error::Input(format!("threads must be between 1 and {MAX_THREADS}, got {n}"))),
            Some(1) => Ok(Threads::Solo),
            Some(n) => pool(n).map(Threads::Pool),
        }
    }
}

fn build(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("hetsched-cpu{threads}-{i}"))
        .build()
        .map_err(|e| Error::DeviceUnavailable { device: "cpu".into(), reason: format!("starting {threads} threads: {e}") })
}

thread_local! {
    static SOLO: std::cell::OnceCell<Option<rayon::ThreadPool>> = const { std::cell::OnceCell::new() };
}

/// The pool of `threads` workers, made once per count and shared by every executable asking for it.
fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = Arc::new(build(threads)?);
    pools.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f` (a whole run's steps) on a worker of its pool, so each kernel's parallel loop splits
/// work with that thread instead of handing the loop to the pool and sleeping until it is done
/// (two thread wake-ups per op, which cost more than many small ops compute). A run already on
/// a worker of that pool runs where it is.
pub fn run<R: Send>(threads: &Threads, f: impl FnOnce() -> R + Send) -> R {
    match threads {
        Threads::Pool(p) if p.current_thread_index().is_some() => f(),
        Threads::Pool(p) => p.install(|| with_helper(f)),
        Threads::Global if rayon::current_thread_index().is_some() => f(),
        Threads::Global => with_helper(f),
        // Already on a one-worker pool (a solo run inside a solo run's kernel): stay.
        Threads::Solo if rayon::current_num_threads() == 1 && rayon::current_thread_index().is_some() => f(),
        Threads::Solo => SOLO.with(|cell| match cell.get_or_init(|| build(1).ok()) {
            Some(p) => p.install(f),
            // No thread to start: the global pool, rather than no run.
            None => with_helper(f),
        }),
    }
}

/// `f` with one other worker of the current pool kept awake for its length, taking each parallel
/// loop's jobs as soon as they are queued, as ONNX Runtime's spinning pool does (a sleeping
/// worker takes tens of microseconds to wake, longer than many ops last). One thread: no helper.
fn with_helper<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2 {
        return f();
    }
    let done = AtomicBool::new(false);
    // Set on every way out of the run, a panic included, or the helper would keep the scope
    // (and the caller) waiting forever.
    struct Finish<'a>(&'a AtomicBool);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    rayon::scope(|s| {
        s.spawn(|_| help_until(&done));
        let _finish = Finish(&done);
        f()
    })
}

/// Idle this long, the helper yields its core to the OS scheduler between polls...
const SPIN: Duration = Duration::from_micros(50);
/// ... and this long, it naps between polls (a job queued meanwhile waits at most a nap, and
/// the thread that queued it runs it itself if nobody takes it).
const YIELD: Duration = Duration::from_millis(1);
const NAP: Duration = Duration::from_micros(50);

fn help_until(done: &AtomicBool) {
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = Instant::now();
            continue;
        }
        let idle = idle_since.elapsed();
        if idle < SPIN {
            std::hint::spin_loop();
        } else if idle < YIELD {
            std::thread::yield_now();
        } else {
            std::thread::sleep(NAP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_have_their_thread_count_and_are_shared() {
        let one = Threads::new(Some(1)).unwrap();
        assert_eq!(run(&one, rayon::current_num_threads), 1);
        // Each calling thread has its own solo worker: two callers do not wait for each other.
        let here = run(&one, || std::thread::current().id());
        let there = std::thread::spawn(move || run(&Threads::new(Some(1)).unwrap(), || std::thread::current().id())).join().unwrap();
        assert_ne!(here, there);
        let three = Threads::new(Some(3)).unwrap();
        assert_eq!(run(&three, rayon::current_num_threads), 3);
        assert!(Arc::ptr_eq(&pool(3).unwrap(), &pool(3).unwrap()));
        assert!(Threads::new(Some(0)).is_err() && Threads::new(Some(MAX_THREADS + 1)).is_err());
        // A run with the helper returns f's value, and a panic in f still ends the scope.
        assert_eq!(run(&three, || 7), 7);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&three, || panic!("kernel"))));
        assert!(caught.is_err());
        assert_eq!(run(&three, || 8), 8);
    }
}
