//! The memory budget: how much a session may plan to hold (weights plus the peak of live
//! activations in its execution order), checked before anything is allocated, so a model that
//! would not fit at a batch size is an error that says how much it needs rather than an abort.
//! Allocations sized by values only known at run time go through [`try_filled`].

use crate::error::{Error, Result};

/// The share of the machine's available memory a session may plan for by default.
pub const DEFAULT_SHARE: f64 = 0.8;

/// Bytes from a line of /proc/meminfo (`MemAvailable:  123 kB`).
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The process's address-space limit (`ulimit -v`), when set.
fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The cgroup's memory limit (containers), when set.
fn cgroup_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?.trim().parse().ok()
}

/// [`DEFAULT_SHARE`] of the least of available memory, the address-space limit and the cgroup
/// limit; 8 GiB where none can be read.
pub fn default_budget() -> u64 {
    let limits = [meminfo("MemAvailable:"), address_space_limit(), cgroup_limit()];
    let least = limits.into_iter().flatten().min().unwrap_or(8 << 30);
    (least as f64 * DEFAULT_SHARE) as u64
}

/// A byte count for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[u]) }
}

/// Refuses a bound graph whose weights and peak activations exceed `budget`.
pub fn check(graph: &crate::graph::Graph, dims: &crate::graph::Bindings, budget: u64) -> Result<()> {
    let cost = crate::analysis::analyze(graph)?;
    let need = cost.weight_bytes + cost.peak_activation_bytes;
    if need > budget {
        return Err(Error::Memory(format!(
            "the model needs {} at dims {dims:?} ({} of weights, a peak of {} of activations), over the budget of {} (SessionOptions::mem_budget, --mem-budget; default {:.0}% of the memory available)",
            human(need),
            human(cost.weight_bytes),
            human(cost.peak_activation_bytes),
            human(budget),
            DEFAULT_SHARE * 100.0
        )));
    }
    Ok(())
}

/// Refuses a kernel's side buffer (tables, workspaces) of `bytes` that the process's default
/// budget cannot hold: sized from the output, such buffers escape the per-tensor limit.
pub fn check_side_buffer(bytes: u64, what: &str) -> Result<()> {
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let budget = *BUDGET.get_or_init(default_budget);
    if bytes > budget {
        return Err(Error::Memory(format!("{what} would need {}, over the budget of {}", human(bytes), human(budget))));
    }
    Ok(())
}

/// A vector of `n` copies of `value`, or an error where the memory cannot be reserved (instead
/// of the allocator aborting the process).
pub fn try_filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// An empty vector with room for `n` elements, or an error where it cannot be reserved.
pub fn try_with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Memory(format!("{what}: cannot reserve {} ({n} elements)", human((n as u64).saturating_mul(std::mem::size_of::<T>() as u64)))))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn budgets_and_reservations() {
        assert!(super::default_budget() > 0);
        assert_eq!(super::human(1536), "1.5 KiB");
        assert!(super::try_filled(usize::MAX / 2, 0u64, "test").is_err());
        assert_eq!(super::try_filled(3, 7u8, "test").unwrap(), vec![7, 7, 7]);
    }
}
