//! The CPU's activation arena: intermediates live in planned buffers that are reused across
//! runs, so a warm run allocates nothing for them and takes no page faults (a fresh allocation
//! of a large activation is zero-filled page by page by the kernel: 14% of mobilenet_v2's time
//! at batch 8 on one thread went to the system before the arena), and the memory a run holds is
//! known when the executable is built.
//!
//! [`ArenaPlan`] is the liveness analysis: every f32 value of a known size that is neither a
//! graph input, an output nor a constant lives from the step that writes it to the last step
//! that reads it (a layout-only step that takes over its input's buffer extends that life), and
//! values whose lives do not overlap share a buffer ([`crate::analysis::lifetimes::share`]).
//!
//! Kernels write their outputs into vectors they allocate; the executor puts a step's planned
//! buffer on offer on its thread before the kernel runs, and a kernel's output allocation,
//! [`output`], takes it. When the value dies its vector goes back to the buffer. A kernel that
//! does not allocate through [`output`] (or allocates something else first) still computes
//! right: the buffer only changes hands, and an offer nobody took is withdrawn after the step.
//! `HETSCHED_CPU_ARENA=0` turns the arena off (every output allocated fresh).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::analysis::lifetimes::{share, Life};

thread_local! {
    /// A kernel's scratch, kept by the thread between calls (see [`with_scratch`]).
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The planned buffers of the step this thread is running (its outputs' in order, the
    /// first last), until kernels take them.
    static OFFER: RefCell<Vec<(usize, Vec<f32>)>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for `n` elements for a kernel's output: the next buffer on offer
/// when it holds f32 (grown if too small), else a fresh allocation. The kernel writes every
/// element.
pub fn output<T: 'static>(n: usize) -> Vec<T> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        if let Some((_, v)) = OFFER.with(|o| o.borrow_mut().pop()) {
            let any: Box<dyn Any> = Box::new(emptied_with_room(v, n));
            return *any.downcast::<Vec<T>>().expect("T is f32");
        }
    }
    Vec::with_capacity(n)
}

/// Runs `f` on an empty scratch vector with room for `n` floats, kept by this thread from call
/// to call: a fresh large allocation is zero-filled by the OS page by page on first touch each
/// time the allocator has given the last one back (mimalloc does after a few milliseconds, so a
/// batch's convolution scratch faulted on every run after the first second). A call nested in
/// `f` (a parallel loop's task run on this thread) gets a scratch of its own.
pub fn with_scratch<R>(n: usize, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut v = emptied_with_room(SCRATCH.with(|s| s.take()), n);
    let r = f(&mut v);
    // Keep the larger of this one and any a nested call left.
    SCRATCH.with(|s| {
        let other = s.take();
        s.set(if other.capacity() > v.capacity() { other } else { v });
    });
    r
}

/// `v` emptied, with room for `n` elements: reallocated when too small, not grown in place (a
/// reallocation would copy the old contents for nothing).
fn emptied_with_room(mut v: Vec<f32>, n: usize) -> Vec<f32> {
    v.clear();
    if v.capacity() < n {
        v = Vec::with_capacity(n);
    }
    v
}

/// Whether a planned buffer is on offer (sized by inference, so within the memory budget).
pub fn on_offer() -> bool {
    OFFER.with(|o| !o.borrow().is_empty())
}

/// [`output`] holding `n` zeros, for kernels that accumulate into their output.
pub fn output_zeroed(n: usize) -> Vec<f32> {
    let mut v = output::<f32>(n);
    v.resize(n, 0.0);
    v
}

/// [`output`] holding a copy of `src`, for kernels that work in place on a copy of their input.
pub fn output_copy(src: &[f32]) -> Vec<f32> {
    let mut v = output::<f32>(src.len());
    v.extend_from_slice(src);
    v
}

/// Puts buffers on offer to the kernel this thread runs next, for its outputs in order.
fn offer(mut buffers: Vec<(usize, Vec<f32>)>) {
    buffers.reverse();
    OFFER.with(|o| *o.borrow_mut() = buffers);
}

/// Takes back the offers no kernel took.
fn withdraw() -> Vec<(usize, Vec<f32>)> {
    OFFER.with(|o| std::mem::take(&mut *o.borrow_mut()))
}

/// Which value slots live in which buffer, and the buffers' sizes, for one step list.
#[derive(Debug, Default)]
pub struct ArenaPlan {
    /// Per value slot: its buffer, for planned values.
    pub buffer_of: Vec<Option<usize>>,
    /// Elements of each buffer (its largest occupant).
    pub buffer_len: Vec<usize>,
}

/// One planned value for [`ArenaPlan::new`]: a slot written by `step` and last read by
/// `last_read` (None: never read in the run), with `len` elements when it is an f32 value of a
/// size known ahead.
pub struct SlotUse {
    pub slot: usize,
    pub step: usize,
    pub last_read: Option<usize>,
    pub len: Option<usize>,
    /// A layout-only step's output that takes over this slot's buffer (`taken_by`'s value
    /// then lives on in the same buffer).
    pub taken_by: Option<usize>,
}

impl ArenaPlan {
    /// Plans `uses` over `num_slots` slots and `steps` steps; `pinned` slots (graph inputs,
    /// outputs, constants) are never planned, nor is a chain of buffer takeovers holding one.
    pub fn new(num_slots: usize, steps: usize, uses: &[SlotUse], pinned: &[bool]) -> ArenaPlan {
        // A chain of takeovers is one value: its first writer to its last reader.
        let by_slot: std::collections::HashMap<usize, &SlotUse> = uses.iter().map(|u| (u.slot, u)).collect();
        let taken: std::collections::HashSet<usize> = uses.iter().filter_map(|u| u.taken_by).collect();
        let mut lives = vec![];
        let mut members: Vec<Vec<usize>> = vec![];
        for head in uses.iter().filter(|u| !taken.contains(&u.slot)) {
            let mut chain = vec![head.slot];
            let mut at = head;
            while let Some(next) = at.taken_by.and_then(|s| by_slot.get(&s)) {
                chain.push(next.slot);
                at = next;
            }
            let lens: Option<Vec<usize>> = chain.iter().map(|s| by_slot[s].len).collect();
            let (Some(lens), false) = (lens, chain.iter().any(|&s| pinned[s])) else { continue };
            // Never read: it stays in its slot to the end of the run.
            let last = at.last_read.unwrap_or(steps);
            lives.push(Life { first: head.step, last, kind: (), len: lens.into_iter().max().unwrap_or(0) });
            members.push(chain);
        }
        let (slot_of, buffers) = share(&lives);
        let mut buffer_of = vec![None; num_slots];
        for (chain, b) in members.iter().zip(slot_of) {
            for &s in chain {
                buffer_of[s] = Some(b);
            }
        }
        ArenaPlan { buffer_of, buffer_len: buffers.into_iter().map(|(_, len)| len).collect() }
    }

    pub fn bytes(&self) -> u64 {
        self.buffer_len.iter().map(|&l| l as u64 * 4).sum()
    }
}

/// The buffers of one run, taken from the executable's pool for its length.
pub struct Buffers {
    held: Vec<Vec<f32>>,
    /// Buffers offered to kernels, and those left untaken, in this run.
    offered: u64,
    untaken: u64,
}

impl Buffers {
    /// Offers `buffers` to the outputs of the step about to run, in order (each allocated at
    /// its planned size on first use).
    pub fn offer(&mut self, buffers: impl Iterator<Item = usize>, plan: &ArenaPlan) {
        let offers = buffers
            .map(|b| {
                let v = std::mem::take(&mut self.held[b]);
                (b, if v.capacity() == 0 { Vec::with_capacity(plan.buffer_len[b]) } else { v })
            })
            .collect::<Vec<_>>();
        self.offered += offers.len() as u64;
        offer(offers);
    }

    /// After the step: offers no kernel took go back to their buffers.
    pub fn withdraw(&mut self) {
        for (b, v) in withdraw() {
            self.untaken += 1;
            self.give_back(b, v);
        }
    }

    /// A dead value's vector becomes `buffer`'s again (the larger, where a kernel allocated
    /// beside the offer).
    pub fn give_back(&mut self, buffer: usize, v: Vec<f32>) {
        if v.capacity() >= self.held[buffer].capacity() {
            self.held[buffer] = v;
        }
    }

    fn bytes(&self) -> u64 {
        self.held.iter().map(|v| v.capacity() as u64 * 4).sum()
    }
}

/// An executable's arena: its plan and the buffers of the runs not in progress (one set per
/// run that was ever in progress at once, so concurrent runs never share a buffer).
pub struct Arena {
    pub plan: ArenaPlan,
    idle: Mutex<Vec<Buffers>>,
    /// Runs that found a warm set of buffers, and runs that had to start a new one.
    warm_runs: AtomicU64,
    cold_runs: AtomicU64,
    offered: AtomicU64,
    untaken: AtomicU64,
}

impl Arena {
    pub fn new(plan: ArenaPlan) -> Arena {
        Arena { plan, idle: Mutex::new(vec![]), warm_runs: AtomicU64::new(0), cold_runs: AtomicU64::new(0), offered: AtomicU64::new(0), untaken: AtomicU64::new(0) }
    }

    /// Whether kernels get planned buffers (`HETSCHED_CPU_ARENA=0`: no).
    pub fn enabled() -> bool {
        std::env::var("HETSCHED_CPU_ARENA").map_or(true, |v| v != "0")
    }

    pub fn take(&self) -> Buffers {
        let found = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let counter = if found.is_some() { &self.warm_runs } else { &self.cold_runs };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut buffers = found.unwrap_or_else(|| Buffers { held: vec![Vec::new(); self.plan.buffer_len.len()], offered: 0, untaken: 0 });
        (buffers.offered, buffers.untaken) = (0, 0);
        buffers
    }

    pub fn put(&self, buffers: Buffers) {
        self.offered.fetch_add(buffers.offered, Ordering::Relaxed);
        self.untaken.fetch_add(buffers.untaken, Ordering::Relaxed);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(buffers);
    }

    /// Bytes the idle buffer sets hold.
    pub fn held_bytes(&self) -> u64 {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).iter().map(Buffers::bytes).sum()
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            buffers: self.plan.buffer_len.len(),
            planned_bytes: self.plan.bytes(),
            held_bytes: self.held_bytes(),
            warm_runs: self.warm_runs.load(Ordering::Relaxed),
            cold_runs: self.cold_runs.load(Ordering::Relaxed),
            offered: self.offered.load(Ordering::Relaxed),
            untaken: self.untaken.load(Ordering::Relaxed),
        }
    }
}

/// What an executable's arena planned and holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    pub buffers: usize,
    /// The buffers' planned sizes added up.
    pub planned_bytes: u64,
    /// What the idle buffer sets hold now.
    pub held_bytes: u64,
    pub warm_runs: u64,
    pub cold_runs: u64,
    /// Buffers offered to kernels over the finished runs, and those no kernel took (its output
    /// allocated elsewhere).
    pub offered: u64,
    pub untaken: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Executable;
    use crate::backend::cpu::executor::CpuExecutable;
    use crate::tensor::{DType, Tensor};
    use std::sync::Arc;

    /// unet_tiny (it ships in the repository) bound at batch 2, and seeded inputs for it.
    fn unet_tiny() -> (Arc<crate::graph::Graph>, Vec<Tensor>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/unet_tiny/model.onnx");
        let graph = crate::onnx::load_model(path).unwrap();
        let bindings = crate::session::default_bindings(&graph, 2, 16, &Default::default());
        let mut g = crate::session::bind(&graph, &bindings).unwrap();
        crate::passes::optimize(&mut g).unwrap();
        let inputs = g
            .inputs
            .iter()
            .enumerate()
            .map(|(k, i)| {
                assert_eq!(i.dtype, DType::F32);
                let shape = g.g[i.node].outputs[0].shape.clone().unwrap();
                Tensor::from_f32(&shape, crate::test_values::values(shape.iter().product(), 7 + k as u32, -0.5, 0.5)).unwrap()
            })
            .collect();
        (Arc::new(g), inputs)
    }

    #[test]
    fn the_arena_changes_no_output_and_serves_every_run_after_the_first() {
        let (graph, inputs) = unet_tiny();
        let fresh = CpuExecutable::new(graph.clone()).unwrap().with_arena(false);
        let planned = CpuExecutable::new(graph).unwrap().with_arena(true);
        let expected = fresh.run(inputs.clone()).unwrap();
        for _ in 0..3 {
            assert_eq!(planned.run(inputs.clone()).unwrap(), expected, "outputs with the arena");
        }
        let stats = planned.arena_stats().unwrap();
        assert_eq!((stats.cold_runs, stats.warm_runs), (1, 2));
        assert_eq!(stats.held_bytes, stats.planned_bytes, "one set of buffers, each at its planned size");
        assert!(stats.offered > 0 && stats.untaken * 10 <= stats.offered, "kernels allocate their outputs elsewhere: {stats:?}");
        // The buffers hold the live peak, and not twice over.
        let memory = planned.memory()["cpu"];
        let held = memory.activation_bytes + memory.arena_overhead_bytes;
        assert!(held >= memory.activation_bytes && memory.arena_overhead_bytes * 2 <= memory.activation_bytes, "{memory:?}");
        assert_eq!(fresh.memory()["cpu"].activation_bytes, memory.activation_bytes, "the same values live");
    }

    #[test]
    fn concurrent_runs_never_share_buffers() {
        let (graph, inputs) = unet_tiny();
        let exe = CpuExecutable::new(graph).unwrap().with_arena(true);
        let expected = exe.run(inputs.clone()).unwrap();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..4 {
                        assert_eq!(exe.run(inputs.clone()).unwrap(), expected);
                    }
                });
            }
        });
        let stats = exe.arena_stats().unwrap();
        assert_eq!(stats.cold_runs + stats.warm_runs, 13);
        assert!((1..=3).contains(&stats.cold_runs), "a set of buffers per run in progress: {stats:?}");
        assert_eq!(stats.held_bytes, stats.cold_runs * stats.planned_bytes);
    }

    fn chain(lens: &[usize]) -> Vec<SlotUse> {
        // Slot i is written by step i and read by step i + 1.
        lens.iter().enumerate().map(|(i, &l)| SlotUse { slot: i, step: i, last_read: Some(i + 1), len: Some(l), taken_by: None }).collect()
    }

    #[test]
    fn a_chain_of_values_needs_two_buffers() {
        let plan = ArenaPlan::new(4, 4, &chain(&[100, 30, 200, 30]), &[false; 4]);
        assert_eq!(plan.buffer_of, vec![Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(plan.buffer_len, vec![200, 30]);
        assert_eq!(plan.bytes(), 4 * 230);
    }

    #[test]
    fn pinned_unsized_and_taken_over_values() {
        let mut uses = chain(&[100, 100, 100, 100, 100]);
        uses[1].len = None; // sized at run time
        // Slot 2's buffer is taken by slot 3 (a Reshape reading it last): one value over steps 2-4.
        uses[2].taken_by = Some(3);
        uses[2].last_read = Some(3);
        let pinned = [false, false, false, false, true];
        let plan = ArenaPlan::new(5, 5, &uses, &pinned);
        assert_eq!(plan.buffer_of[1], None);
        assert_eq!(plan.buffer_of[4], None);
        assert_eq!(plan.buffer_of[2], plan.buffer_of[3]);
        assert!(plan.buffer_of[2].is_some());
        // Slot 0 (steps 0-1) is dead before slot 2 is written.
        assert_eq!(plan.buffer_of[0], plan.buffer_of[2]);
        // A takeover chain ending in a pinned slot is not planned.
        let plan = ArenaPlan::new(5, 5, &uses, &[false, false, false, true, false]);
        assert_eq!((plan.buffer_of[2], plan.buffer_of[3]), (None, None));
    }

    #[test]
    fn scratch_is_kept_between_calls_and_nested_calls_get_their_own() {
        let first = with_scratch(1000, |v| {
            v.resize(1000, 1.0);
            let inner = with_scratch(10, |w| {
                assert!(w.is_empty() && w.capacity() >= 10);
                w.as_ptr()
            });
            assert_ne!(inner, v.as_ptr(), "a nested call has its own scratch");
            v.as_ptr()
        });
        // The larger one is kept and handed out empty again.
        with_scratch(500, |v| assert_eq!((v.as_ptr(), v.len()), (first, 0)));
    }

    #[test]
    fn offers_go_to_f32_outputs_in_order() {
        offer(vec![(3, Vec::with_capacity(64)), (5, Vec::with_capacity(48))]);
        let ints: Vec<i64> = output(8);
        assert!(ints.capacity() >= 8);
        let v: Vec<f32> = output(32);
        assert_eq!(v.capacity(), 64, "the first offer");
        let left = withdraw();
        assert_eq!((left.len(), left[0].0, left[0].1.capacity()), (1, 5, 48));
        let w: Vec<f32> = output(32);
        assert!(w.capacity() >= 32, "nothing on offer: a fresh allocation");
        offer(vec![(0, Vec::with_capacity(4))]);
        let grown = output_zeroed(10);
        assert_eq!(grown, vec![0.0; 10]);
        assert!(withdraw().is_empty());
    }
}
