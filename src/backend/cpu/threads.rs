//! The CPU's threads: the process's global pool (one worker per core) by default; a shared pool
//! per requested count above one; and for one thread, a one-worker pool of each calling thread's
//! own (so single-threaded sessions serving many callers run side by side, as ONNX Runtime's
//! runs with one intra-op thread do on their callers' threads). A run keeps a helper worker
//! awake between its kernels' parallel loops, backing off when it has had nothing to take for a
//! while (the core may be wanted elsewhere: another request, another stage, another process).
//! When the helper finds the OS has taken its core for a time slice (the machine is busy), it
//! stands aside and the loops run on the run's own thread for a while (`width`): a share given to
//! a preempted thread would hold up every loop, as it does for ONNX Runtime's pool. A CLI adopts
//! its main thread into the pool (`adopt_calling_thread`), so its runs start where they are
//! called.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most threads a session may ask for.
pub const MAX_THREADS: usize = 1024;

/// Where a run's kernels run.
#[derive(Clone)]
pub enum Threads {
    /// The process's global pool.
    Global,
    /// One thread: the calling thread's own one-worker pool (on these cores; empty: anywhere).
    Solo(Vec<usize>),
    /// A pool of that many workers, shared by every executable asking for the count and cores.
    Pool(Arc<rayon::ThreadPool>),
}

impl Threads {
    /// `threads` workers (None: one per core, or one per core given), on `cores` (empty: anywhere).
    pub fn new(threads: Option<usize>, cores: &[usize]) -> Result<Threads> {
        if !cores.is_empty() {
            crate::affinity::check(cores)?;
        }
        match threads.or((!cores.is_empty()).then_some(cores.len())) {
            None => Ok(Threads::Global),
            Some(n) if n == 0 || n > MAX_THREADS => Err(Error::Input(format!("threads must be between 1 and {MAX_THREADS}, got {n}"))),
            Some(1) => Ok(Threads::Solo(cores.to_vec())),
            Some(n) => pool(n, cores).map(Threads::Pool),
        }
    }
}

/// A pool of `threads` workers, each moved onto `cores` (checked by the caller) as it starts.
fn build(threads: usize, cores: &[usize]) -> Result<rayon::ThreadPool> {
    let on = cores.to_vec();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("hetsched-cpu{threads}-{i}"))
        .start_handler(move |_| {
            if !on.is_empty() {
                // Checked when the pool was asked for; a worker left anywhere still computes.
                let _ = crate::affinity::pin_current(&on);
            }
        })
        .build()
        .map_err(|e| Error::DeviceUnavailable { device: "cpu".into(), reason: format!("starting {threads} threads: {e}") })
}

thread_local! {
    /// This thread's one-worker pools, one per core set asked for.
    static SOLO: std::cell::RefCell<HashMap<Vec<usize>, Option<Arc<rayon::ThreadPool>>>> = Default::default();
}

/// The calling thread's one-worker pool on `cores` (None: no thread could start).
fn solo_pool(cores: &[usize]) -> Option<Arc<rayon::ThreadPool>> {
    SOLO.with(|pools| {
        if let Some(p) = pools.borrow().get(cores) {
            return p.clone();
        }
        pools.borrow_mut().entry(cores.to_vec()).or_insert_with(|| build(1, cores).ok().map(Arc::new)).clone()
    })
}

/// Already on a one-worker pool (a solo run inside a solo run's kernel, or a served loop).
fn on_one_worker_pool() -> bool {
    rayon::current_num_threads() == 1 && rayon::current_thread_index().is_some()
}

/// The pool of `threads` workers on `cores`, made once per count and cores and shared by every
/// executable asking for them.
fn pool(threads: usize, cores: &[usize]) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<(usize, Vec<usize>), Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let key = (threads, cores.to_vec());
    if let Some(p) = pools.get(&key) {
        return Ok(p.clone());
    }
    let p = Arc::new(build(threads, cores)?);
    pools.insert(key, p.clone());
    Ok(p)
}

/// Makes the calling thread worker 0 of the process's global pool, of `threads` workers (default
/// one per core), the count that runs asking for it then use in place. Call it first thing,
/// before anything touches rayon; later calls, a pool already built and a count out of range
/// are no-ops, and say so by returning false.
///
/// Runs on the default pool from that thread then start on it: no hand-over to another worker
/// and back, which costs two wake-ups per run, each waiting for a free core when the machine is
/// busy. A CLI's main thread or a server's one inference thread wants this; it is off by default
/// because a pool's worker 0 runs other callers' jobs only while it is itself inside a parallel
/// loop.
pub fn adopt_calling_thread(threads: Option<usize>) -> bool {
    if threads.is_some_and(|n| n == 0 || n > MAX_THREADS) {
        return false;
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).use_current_thread().thread_name(|i| format!("hetsched-cpu-{i}")).build_global().is_ok()
}

thread_local! {
    static IN_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a whole run's steps) on a worker of its pool, so each kernel's parallel loop splits
/// work with that thread instead of handing the loop to the pool and sleeping until it is done
/// (two thread wake-ups per op, which cost more than many small ops compute). A run already on
/// a worker of that pool (an adopted calling thread, or a run inside a parallel loop) runs where
/// it is, with a helper unless it is nested in another run.
pub fn run<R: Send>(threads: &Threads, f: impl FnOnce() -> R + Send) -> R {
    match threads {
        Threads::Pool(p) if p.current_thread_index().is_some() => in_place(f),
        // A worker of a pool of the same size (an adopted calling thread): as good a place.
        Threads::Pool(p) if rayon::current_thread_index().is_some() && rayon::current_num_threads() == p.current_num_threads() => in_place(f),
        Threads::Pool(p) => p.install(|| with_helper(f)),
        Threads::Global if rayon::current_thread_index().is_some() => in_place(f),
        Threads::Global => with_helper(f),
        Threads::Solo(_) if on_one_worker_pool() => f(),
        Threads::Solo(cores) => match solo_pool(cores) {
            Some(p) => p.install(f),
            // No thread to start: the global pool, rather than no run.
            None => with_helper(f),
        },
    }
}

/// Runs `work`, a loop of runs from this thread, where each of them starts in place: with one
/// thread, on this thread's one-worker pool, entered once for the loop rather than once per run.
/// Other pools are shared, so a loop that blocks between runs must not hold one of their
/// workers: their runs keep the usual hand-over.
pub fn serve(threads: &Threads, work: impl FnOnce() + Send) {
    match threads {
        Threads::Solo(cores) if !on_one_worker_pool() => match solo_pool(cores) {
            Some(p) => p.install(work),
            None => work(),
        },
        _ => work(),
    }
}

/// `f` on this worker: with a helper for an outer run, as it is for a nested one.
fn in_place<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if IN_RUN.with(|r| r.get()) {
        f()
    } else {
        with_helper(f)
    }
}

/// `f` with one other worker of the current pool kept awake for its length, taking each parallel
/// loop's jobs as soon as they are queued, as ONNX Runtime's spinning pool does (a sleeping
/// worker takes tens of microseconds to wake, longer than many ops last). One thread, or a busy
/// machine (see `width`): no helper.
fn with_helper<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if width() < 2 {
        return f();
    }
    let done = AtomicBool::new(false);
    // Set on every way out of the run, a panic included, or the helper would keep the scope
    // (and the caller) waiting forever.
    /// Ends the helper's wait and gives `IN_RUN` back the value it had before this run.
    struct Finish<'a>(&'a AtomicBool, bool);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
            IN_RUN.with(|r| r.set(self.1));
        }
    }
    rayon::scope(|s| {
        s.spawn(|_| help_until(&done));
        let outer = IN_RUN.with(|r| r.replace(true));
        let _finish = Finish(&done, outer);
        f()
    })
}

/// Idle this long, the helper yields its core to the OS scheduler between polls...
const SPIN: Duration = Duration::from_micros(50);
/// ... and this long, it naps between polls (a job queued meanwhile waits at most a nap, and
/// the thread that queued it runs it itself if nobody takes it).
const YIELD: Duration = Duration::from_millis(1);
const NAP: Duration = Duration::from_micros(50);
/// A poll that comes back this much later than it should have lost the core to another thread.
const PREEMPTED: Duration = Duration::from_micros(300);
/// Then the helper stands aside, taking nothing, for this long, doubling while it keeps losing
/// its core (up to the most): a job it took and was preempted in would hold up the whole
/// parallel loop until the OS gave the core back, where the run's own thread would have done
/// that share sooner itself.
const ASIDE: Duration = Duration::from_millis(4);
const ASIDE_MOST: Duration = Duration::from_millis(64);

/// When the machine was last seen busy (ns since `epoch()`) and the current stand-aside, shared
/// by every run's helper: a process running back-to-back runs stays aside across them.
static ASIDE_UNTIL: AtomicU64 = AtomicU64::new(0);
static ASIDE_NS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The threads a parallel loop should split its work over now: the pool's, or one while the
/// machine is busy (a share handed to a worker the OS has preempted holds up the whole loop, and
/// a queued share wakes a sleeping worker that then competes for the caller's core).
pub fn width() -> usize {
    if now_ns() < ASIDE_UNTIL.load(Ordering::Relaxed) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// A parallel loop's least items per job: `min`, or all of them while the machine is busy (see
/// `width`), so the loop runs on the calling thread without queueing a job.
pub fn min_len(min: usize) -> usize {
    if width() == 1 {
        usize::MAX
    } else {
        min
    }
}

/// Records a lost core: stand aside from now on.
fn preempted() {
    let now = now_ns();
    let aside = next_aside(now, ASIDE_UNTIL.load(Ordering::Relaxed), ASIDE_NS.load(Ordering::Relaxed));
    ASIDE_NS.store(aside, Ordering::Relaxed);
    ASIDE_UNTIL.store(now + aside, Ordering::Relaxed);
}

/// How long to stand aside after a lost core at `now`, when the last stand-aside lasted `last`
/// and ended at `last_until`: twice as long if it ended recently (the machine is still busy),
/// else `ASIDE`.
fn next_aside(now: u64, last_until: u64, last: u64) -> u64 {
    let (least, most) = (ASIDE.as_nanos() as u64, ASIDE_MOST.as_nanos() as u64);
    if last_until + 4 * last.max(least) > now {
        (last * 2).clamp(least, most)
    } else {
        least
    }
}

/// This thread's CPU time.
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    ok.then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// How many times the OS has taken this thread's core from it (involuntary context switches;
/// waits it chose itself, such as a nested loop's sleeps, are not counted).
#[cfg(unix)]
fn times_preempted() -> Option<i64> {
    // SAFETY: getrusage fills one rusage through a valid pointer.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } == 0;
    ok.then_some(u.ru_nivcsw as i64)
}

#[cfg(not(unix))]
fn times_preempted() -> Option<i64> {
    None
}

/// Where a stretch of the helper's time began: the clock, the times the OS took its core, and
/// the CPU time it had had. The two counters are system calls (a microsecond each), too slow to
/// read around every job a helper takes.
struct Mark {
    at: Instant,
    switches: Option<i64>,
    cpu: Option<Duration>,
}

impl Mark {
    fn now() -> Mark {
        Mark { at: Instant::now(), switches: times_preempted(), cpu: thread_cpu_time() }
    }

    /// Between `self` and `later` the thread was taken off its core, and for long: another
    /// thread wanted it for a time slice (a daemon's few microseconds do not count).
    fn lost_core_before(&self, later: &Mark) -> bool {
        match (self.switches, later.switches, self.cpu, later.cpu) {
            (Some(s0), Some(s1), Some(c0), Some(c1)) => s1 > s0 && later.at - self.at > (c1 - c0) + PREEMPTED,
            _ => false,
        }
    }
}

fn help_until(done: &AtomicBool) {
    let mut idle_since = Instant::now();
    let mut mark = Mark::now();
    while !done.load(Ordering::Acquire) {
        if width() == 1 {
            // Standing aside: the loops do not split meanwhile, so there is nothing to take,
            // and a thread waking to look would only take turns on the run's core.
            return;
        }
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = Instant::now();
            // Only a stretch longer than PREEMPTED can hide a lost core, so the counters are
            // read once it is that long, not around every job: a step of an RNN lasts a few
            // microseconds, and the next is queued as soon as it ends.
            if idle_since - mark.at > PREEMPTED {
                let now = Mark::now();
                if mark.lost_core_before(&now) {
                    preempted();
                }
                mark = now;
            }
            continue;
        }
        let poll = Instant::now();
        let idle = poll - idle_since;
        let expected = if idle < SPIN {
            std::hint::spin_loop();
            Duration::ZERO
        } else if idle < YIELD {
            std::thread::yield_now();
            Duration::ZERO
        } else {
            std::thread::sleep(NAP);
            NAP
        };
        if poll.elapsed() > expected + PREEMPTED {
            preempted();
        }
        if idle >= SPIN {
            // A yield or a nap is time off the core by choice: the next stretch starts after it.
            mark = Mark::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_loop_of_one_thread_runs_each_run_where_it_stands() {
        let solo = Threads::new(Some(1), &[]).unwrap();
        let caller = std::thread::current().id();
        // Outside a served loop a solo run is handed to the caller's one worker and back.
        assert_ne!(run(&solo, || std::thread::current().id()), caller);
        let mut seen = vec![];
        serve(&solo, || {
            let loop_thread = std::thread::current().id();
            for _ in 0..3 {
                let (thread, width) = run(&solo, || (std::thread::current().id(), rayon::current_num_threads()));
                seen.push((thread == loop_thread, width));
            }
        });
        assert_eq!(seen, vec![(true, 1); 3], "each run in place, on one thread");
        // Shared pools are never held by a loop.
        let two = Threads::new(Some(2), &[]).unwrap();
        serve(&two, || assert_eq!(std::thread::current().id(), caller));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn runs_given_cores_run_there() {
        let last = *crate::affinity::allowed().unwrap().last().unwrap();
        for threads in [Some(1), Some(2), None] {
            let on = Threads::new(threads, &[last]).unwrap();
            assert_eq!(run(&on, || crate::affinity::current().unwrap()), vec![last], "{threads:?}");
        }
        assert!(matches!(Threads::new(None, &[last]).unwrap(), Threads::Solo(_)), "one core given: one thread");
        assert!(Threads::new(Some(1), &[last + 1]).err().expect("a core not there").to_string().contains("not one this process may run on"));
    }

    #[test]
    fn pools_have_their_thread_count_and_are_shared() {
        let one = Threads::new(Some(1), &[]).unwrap();
        assert_eq!(run(&one, rayon::current_num_threads), 1);
        // Each calling thread has its own solo worker: two callers do not wait for each other.
        let here = run(&one, || std::thread::current().id());
        let there = std::thread::spawn(move || run(&Threads::new(Some(1), &[]).unwrap(), || std::thread::current().id())).join().unwrap();
        assert_ne!(here, there);
        let three = Threads::new(Some(3), &[]).unwrap();
        assert_eq!(run(&three, rayon::current_num_threads), 3);
        assert!(Arc::ptr_eq(&pool(3, &[]).unwrap(), &pool(3, &[]).unwrap()));
        assert!(Threads::new(Some(0), &[]).is_err() && Threads::new(Some(MAX_THREADS + 1), &[]).is_err());
        // A run with the helper returns f's value, and a panic in f still ends the scope.
        assert_eq!(run(&three, || 7), 7);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&three, || panic!("kernel"))));
        assert!(caught.is_err());
        assert_eq!(run(&three, || 8), 8);
    }

    #[test]
    fn a_busy_machine_runs_loops_on_the_calling_thread_for_a_while() {
        let pool = Threads::new(Some(2), &[]).unwrap();
        // (Set directly, not by `preempted`, so a slow test machine cannot outlast it.)
        ASIDE_UNTIL.store(now_ns() + 60_000_000_000, Ordering::Relaxed);
        assert_eq!(run(&pool, || (width(), min_len(3))), (1, usize::MAX));
        ASIDE_UNTIL.store(0, Ordering::Relaxed);
        let (least, most) = (ASIDE.as_nanos() as u64, ASIDE_MOST.as_nanos() as u64);
        // Losses in a row double the stand-aside up to the most; after a quiet spell it starts
        // again from the least.
        let mut aside = next_aside(1 << 40, 0, 0);
        assert_eq!(aside, least);
        for _ in 0..10 {
            aside = next_aside((1 << 40) + aside + 1, (1 << 40) + aside, aside);
        }
        assert_eq!(aside, most);
        assert_eq!(next_aside((1 << 40) + 10 * most, 1 << 40, most), least);
    }
}
