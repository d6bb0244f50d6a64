//! Core affinity: which CPU cores a device's threads may run on (`--cores cpu=0,wgpu=1`).
//!
//! Why it matters: a software device such as lavapipe runs each submit as a chain of hand-offs
//! between the caller and its driver threads. Left to the OS, the links of that chain land on
//! different cores, and on a virtual machine a wake-up across cores costs tens of microseconds
//! (an inter-processor interrupt through the hypervisor). With the chain on one core and the
//! CPU's stage on another, each device really has its own core. Linux only; elsewhere asking
//! for cores is an error rather than a silent no-op.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Cores per device name; a device not named runs anywhere.
pub type CoreMap = BTreeMap<String, Vec<usize>>;

/// The most cores a set can name (glibc's `CPU_SETSIZE`).
pub const MAX_CORE: usize = 1024;

/// Parses a core list such as `0`, `0-3` or `0,2,4-5` into sorted, distinct core numbers.
pub fn parse_list(text: &str) -> Result<Vec<usize>> {
    // Every number is bounded before a range is expanded, so `0-99999999` cannot fill memory.
    let number = |s: &str| match s.trim().parse::<usize>() {
        Ok(c) if c >= MAX_CORE => Err(Error::Input(format!("core {c} is beyond the {MAX_CORE} cores this build can address"))),
        Ok(c) => Ok(c),
        Err(_) => Err(Error::Input(format!("'{s}' in core list '{text}' is not a core number"))),
    };
    let mut cores = vec![];
    for part in text.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(Error::Input(format!("core range '{part}' runs backwards")));
                }
                cores.extend(a..=b);
            }
            None => cores.push(number(part)?),
        }
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

/// Parses `DEVICE=LIST[,DEVICE=LIST...]`, where each list runs until the next `DEVICE=`:
/// `cpu=0,1,wgpu=2` gives the CPU cores 0 and 1 and wgpu core 2.
pub fn parse_map(text: &str) -> Result<CoreMap> {
    let mut map = CoreMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    let finish = |entry: Option<(String, Vec<&str>)>, map: &mut CoreMap| -> Result<()> {
        if let Some((device, parts)) = entry {
            let cores = parse_list(&parts.join(","))?;
            if map.insert(device.clone(), cores).is_some() {
                return Err(Error::Input(format!("device '{device}' is given cores twice in '{text}'")));
            }
        }
        Ok(())
    };
    for token in text.split(',').map(str::trim) {
        match token.split_once('=') {
            Some((device, list)) => {
                let device = device.trim();
                if device.is_empty() {
                    return Err(Error::Input(format!("'{token}' in '{text}' names no device (expected DEVICE=CORES)")));
                }
                finish(current.take(), &mut map)?;
                current = Some((device.to_string(), vec![list]));
            }
            None => match current.as_mut() {
                Some((_, parts)) => parts.push(token),
                None => return Err(Error::Input(format!("'{text}' must start with DEVICE=CORES, such as cpu=0,wgpu=1"))),
            },
        }
    }
    finish(current, &mut map)?;
    Ok(map)
}

/// Checks that every core is one this process may run on ([`allowed`]), so a typo fails before
/// any thread moves.
pub fn check(cores: &[usize]) -> Result<()> {
    if cores.is_empty() {
        return Err(Error::Input("an empty core list".into()));
    }
    let allowed = allowed()?;
    match cores.iter().find(|c| !allowed.contains(c)) {
        Some(c) => Err(Error::Input(format!("core {c} is not one this process may run on (allowed: {})", describe(&allowed)))),
        None => Ok(()),
    }
}

/// `0-3,6` for the cores 0, 1, 2, 3 and 6.
pub fn describe(cores: &[usize]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < cores.len() {
        let mut j = i;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        out.push(if j == i { cores[i].to_string() } else { format!("{}-{}", cores[i], cores[j]) });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(target_os = "linux")]
mod os {
    use super::*;

    fn set_of(cores: &[usize]) -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cores {
            // SAFETY: every core was checked against MAX_CORE (CPU_SETSIZE) when parsed.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        set
    }

    /// The cores thread `tid` (0: the calling thread) may run on.
    pub fn cores_of(tid: i32) -> Result<Vec<usize>> {
        // SAFETY: as in `set_of`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the size is the set's own; a bad tid is an error return.
        if unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return Err(Error::Input(format!("reading thread {tid}'s cores: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: reading bits of an initialised set, each index below CPU_SETSIZE.
        Ok((0..MAX_CORE).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
    }

    /// The main thread's id, which is the process's.
    pub fn main_thread() -> i32 {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() }
    }

    /// Moves thread `tid` (0: the calling thread) onto `cores`; a thread that has exited
    /// meanwhile is left alone.
    pub fn pin(tid: i32, cores: &[usize]) -> Result<()> {
        let set = set_of(cores);
        // SAFETY: a valid set of its own size; a stale tid gives ESRCH, not undefined behaviour.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(Error::Input(format!("moving thread {tid} onto cores {}: {e}", describe(cores))));
        }
        Ok(())
    }

    /// The ids of this process's threads now.
    pub fn thread_ids() -> Vec<i32> {
        std::fs::read_dir("/proc/self/task").map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default()
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::*;

    pub fn cores_of(_tid: i32) -> Result<Vec<usize>> {
        Err(Error::Input("choosing cores is supported on Linux only".into()))
    }

    pub fn main_thread() -> i32 {
        0
    }

    pub fn pin(_tid: i32, _cores: &[usize]) -> Result<()> {
        Err(Error::Input("choosing cores is supported on Linux only".into()))
    }

    pub fn thread_ids() -> Vec<i32> {
        vec![]
    }
}

pub use os::thread_ids;

/// The cores this process may run on: its main thread's. Not the calling thread's, which may
/// already be pinned to another device's cores (a pipeline stage, a pool worker) and would then
/// refuse cores the process has.
pub fn allowed() -> Result<Vec<usize>> {
    os::cores_of(os::main_thread())
}

/// The cores the calling thread may run on now.
pub fn current() -> Result<Vec<usize>> {
    os::cores_of(0)
}

/// Moves the calling thread onto `cores`; threads it starts afterwards inherit them.
pub fn pin_current(cores: &[usize]) -> Result<()> {
    check(cores)?;
    os::pin(0, cores)
}

/// Moves other threads of this process (a device driver's) onto `cores`. Threads that have
/// exited since they were listed are skipped.
pub fn pin_threads(tids: &[i32], cores: &[usize]) -> Result<()> {
    check(cores)?;
    tids.iter().try_for_each(|&tid| os::pin(tid, cores))
}

/// Runs `f` and returns, with its result, the threads of this process that appeared meanwhile
/// (those a device driver starts when it opens: lavapipe's rasteriser and queue threads).
pub fn threads_started_by<R>(f: impl FnOnce() -> R) -> (R, Vec<i32>) {
    let before = thread_ids();
    let r = f();
    let started = thread_ids().into_iter().filter(|t| !before.contains(t)).collect();
    (r, started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_maps_parse_and_bad_ones_say_why() {
        assert_eq!(parse_list("3,0-2,2").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(describe(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        let map = parse_map("cpu=0,1,wgpu=2").unwrap();
        assert_eq!(map["cpu"], vec![0, 1]);
        assert_eq!(map["wgpu"], vec![2]);
        assert_eq!(parse_map("cpu=0-3").unwrap()["cpu"], vec![0, 1, 2, 3]);
        for (bad, says) in [("0,x", "not a core number"), ("3-1", "backwards"), ("5000", "beyond"), ("0-99999999", "beyond")] {
            let e = parse_list(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for (bad, says) in [("0,wgpu=1", "must start with DEVICE=CORES"), ("cpu=0,cpu=1", "twice"), ("=1", "names no device"), ("cpu=", "not a core number")] {
            let e = parse_map(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_moves_onto_its_cores_and_its_children_inherit_them() {
        let allowed = allowed().unwrap();
        let (first, last) = (allowed[0], *allowed.last().unwrap());
        let (seen, child, moved_again) = std::thread::spawn(move || {
            pin_current(&[first]).unwrap();
            let child = std::thread::spawn(|| current().unwrap()).join().unwrap();
            let seen = current().unwrap();
            // A pinned thread may still be given any core of the process's, not only its own.
            pin_current(&[last]).unwrap();
            (seen, child, current().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((seen, child, moved_again), (vec![first], vec![first], vec![last]));
        let beyond = allowed.iter().max().unwrap() + 1;
        let e = pin_current(&[beyond]).unwrap_err().to_string();
        assert!(e.contains("not one this process may run on"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn threads_started_meanwhile_are_found_and_moved() {
        let first = allowed().unwrap()[0];
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (handle, started) = threads_started_by(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let h = std::thread::spawn(move || {
                tx.send(()).unwrap();
                stop_rx.recv().ok();
                current().unwrap()
            });
            rx.recv().unwrap();
            h
        });
        assert!(!started.is_empty());
        pin_threads(&started, &[first]).unwrap();
        stop_tx.send(()).unwrap();
        assert_eq!(handle.join().unwrap(), vec![first]);
    }
}
