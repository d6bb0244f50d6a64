//! The CPU's compiled form of a bound graph: an immutable step list with value slots and
//! free points (tract's plan/state split). Each `run` owns its slot vector, so one executable
//! serves many threads.

use crate::backend::Profile;
use super::eval_node_prepared;
use super::prepared::Prepared;
use super::arena::{Arena, ArenaPlan, ArenaStats, Buffers, SlotUse};
use crate::backend::{Executable, NodeTime};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op};
use crate::tensor::{DType, Data, Tensor};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::sync::Arc;

struct Step {
    node: Node,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots whose last reader is this step (freed right after it).
    frees: Vec<usize>,
    /// Layout-only op (Reshape, Flatten, ...) that may take its input's buffer when it is the last reader.
    alias: bool,
    /// Its output shapes were only known at run time: checked against the budget before it runs.
    sized_at_run: bool,
    /// State its kernel derives from its constant weights, kept across runs (convolutions).
    prepared: Option<Prepared>,
}

impl Step {
    /// A layout-only step that is its input's last reader takes over the input's buffer.
    fn takes_over_input(&self) -> bool {
        self.alias && self.inputs[0].is_some_and(|x| self.frees.contains(&x))
    }
}

/// Each step output's life, for the arena's liveness analysis.
fn slot_uses(steps: &[Step], last_use: &HashMap<usize, usize>) -> Vec<SlotUse> {
    let mut uses: Vec<SlotUse> = vec![];
    let mut use_of: HashMap<usize, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if step.takes_over_input() {
            if let Some(&u) = step.inputs[0].and_then(|x| use_of.get(&x)) {
                uses[u].taken_by = Some(step.outputs[0]);
            }
        }
        for (value, &slot) in step.node.outputs.iter().zip(&step.outputs) {
            let len = match (&value.shape, value.dtype) {
                (Some(shape), Some(DType::F32)) if !step.sized_at_run => Some(shape.iter().product()),
                _ => None,
            };
            use_of.insert(slot, uses.len());
            uses.push(SlotUse { slot, step: i, last_read: last_use.get(&slot).copied(), len, taken_by: None });
        }
    }
    uses
}

pub struct CpuExecutable {
    steps: Vec<Step>,
    num_slots: usize,
    constants: Vec<(usize, Arc<Tensor>)>,
    inputs: Vec<(usize, String, Vec<usize>)>,
    outputs: Vec<usize>,
    /// `HETSCHED_PROFILE`: print times after each run (to stderr).
    profile: Profile,
    /// The most bytes a node sized at run time may produce.
    budget: u64,
    /// Where its kernels run (the session's thread count).
    threads: super::threads::Threads,
    /// The most activation bytes live at once in any run so far, and of those outside the
    /// arena (inputs, outputs, values sized at run time).
    peak_live: std::sync::atomic::AtomicU64,
    peak_unplanned: std::sync::atomic::AtomicU64,
    /// Planned buffers for the intermediates, and whether kernels get them.
    arena: Arena,
    arena_on: bool,
}

impl CpuExecutable {
    pub fn new(graph: Arc<Graph>) -> Result<Self> {
        let order = graph.toposort()?;
        let mut slot_of: HashMap<(NodeIndex, usize), usize> = HashMap::new();
        let mut next = 0;
        let mut slot = |k: (NodeIndex, usize), m: &mut HashMap<_, _>| *m.entry(k).or_insert_with(|| { next += 1; next - 1 });
        let mut constants = vec![];
        let mut steps = vec![];
        for &n in &order {
            let node = &graph.g[n];
            let known = node.is_folded();
            if let Op::Input = node.op {
                continue;
            }
            if known {
                // Constants, and anything inference already computed, are preloaded.
                for (i, v) in node.outputs.iter().enumerate() {
                    constants.push((slot((n, i), &mut slot_of), v.value.clone().unwrap()));
                }
                continue;
            }
            let inputs = graph.sources(n).into_iter().map(|s| s.map(|k| slot(k, &mut slot_of))).collect();
            let outputs = (0..node.outputs.len()).map(|i| slot((n, i), &mut slot_of)).collect();
            let sized_at_run = node.outputs.iter().any(|v| v.shape.is_none());
            // Only weights that are the same in every run may be prepared once.
            let constant_weights = graph.sources(n).get(1).copied().flatten().is_some_and(|(w, _)| graph.g[w].is_folded());
            let prepared = (matches!(node.op, Op::Conv { .. }) && constant_weights).then(Prepared::default);
            steps.push(Step { node: node.clone(), inputs, outputs, frees: vec![], alias: node.op.is_layout_only(), sized_at_run, prepared });
        }
        let inputs = graph
            .inputs
            .iter()
            .map(|i| {
                let shape = graph.g[i.node].outputs[0].shape.clone().ok_or_else(|| Error::Input(format!("input '{}' has no bound shape", i.name)))?;
                Ok((slot((i.node, 0), &mut slot_of), i.name.clone(), shape))
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs: Vec<usize> = graph.outputs.iter().map(|o| slot((o.node, o.slot), &mut slot_of)).collect();
        let num_slots = next;
        // Free each non-constant slot after its last reader, unless it is a graph output.
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            for &x in s.inputs.iter().flatten() {
                last_use.insert(x, i);
            }
        }
        let pinned: std::collections::HashSet<usize> = outputs.iter().copied().chain(constants.iter().map(|c| c.0)).collect();
        for (&x, &i) in &last_use {
            if !pinned.contains(&x) {
                steps[i].frees.push(x);
            }
        }
        let mut pinned_slots = vec![false; num_slots];
        for &s in pinned.iter().chain(inputs.iter().map(|i| &i.0)) {
            pinned_slots[s] = true;
        }
        let arena = Arena::new(ArenaPlan::new(num_slots, steps.len(), &slot_uses(&steps, &last_use), &pinned_slots));
        Ok(CpuExecutable { steps, num_slots, constants, inputs, outputs, profile: Profile::from_env(), budget: crate::budget::default_budget(), threads: super::threads::Threads::Global, peak_live: Default::default(), peak_unplanned: Default::default(), arena, arena_on: Arena::enabled() })
    }

    /// Runs on a pool of `threads` workers (None: the process's global pool, one per core) on
    /// `cores` (empty: anywhere; given: one worker per core unless `threads` says otherwise).
    pub fn with_threads(mut self, threads: Option<usize>, cores: &[usize]) -> Result<Self> {
        self.threads = super::threads::Threads::new(threads, cores)?;
        Ok(self)
    }

    /// Intermediates in planned buffers reused across runs (the default, unless
    /// `HETSCHED_CPU_ARENA=0`), or each allocated by its kernel.
    pub fn with_arena(mut self, on: bool) -> Self {
        self.arena_on = on;
        self
    }

    /// Nodes sized at run time may produce at most `budget` bytes (None: the default budget).
    pub fn with_budget(mut self, budget: Option<u64>) -> Self {
        if let Some(b) = budget {
            self.budget = b;
        }
        self
    }
}

impl Executable for CpuExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.run_on_pool(inputs, false).map(|r| r.0)
    }

    fn run_timed(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<NodeTime>)> {
        self.run_on_pool(inputs, true)
    }

    fn serve<'a>(&self, work: Box<dyn FnOnce() + Send + 'a>) {
        super::threads::serve(&self.threads, work)
    }

    fn memory(&self) -> std::collections::BTreeMap<String, crate::backend::MemoryUse> {
        let weight_bytes = self.constants.iter().map(|(_, t)| t.nbytes() as u64).sum();
        let activation_bytes = self.peak_live.load(std::sync::atomic::Ordering::Relaxed);
        // The arena's buffers, and the values outside them at their peak, against the live peak.
        let held = self.arena().map(|a| a.held_bytes() + self.peak_unplanned.load(std::sync::atomic::Ordering::Relaxed));
        let arena_overhead_bytes = held.map_or(0, |h| h.saturating_sub(activation_bytes));
        // Weights the kernels packed for themselves, besides the model's own.
        let workspace_bytes = self.steps.iter().filter_map(|s| s.prepared.as_ref()).map(|p| p.bytes() as u64).sum();
        [("cpu".to_string(), crate::backend::MemoryUse { weight_bytes, activation_bytes, workspace_bytes, arena_overhead_bytes })].into()
    }
}

impl CpuExecutable {
    fn run_on_pool(&self, inputs: Vec<Tensor>, timed: bool) -> Result<(Vec<Tensor>, Vec<NodeTime>)> {
        super::threads::run(&self.threads, || self.run_steps(inputs, timed))
    }

    fn run_steps(&self, inputs: Vec<Tensor>, timed: bool) -> Result<(Vec<Tensor>, Vec<NodeTime>)> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let mut slots: Vec<Option<Arc<Tensor>>> = vec![None; self.num_slots];
        // Bytes of the activations (inputs included, constants not) held at this point.
        let mut live = 0u64;
        for (s, t) in &self.constants {
            slots[*s] = Some(t.clone());
        }
        for ((s, name, shape), t) in self.inputs.iter().zip(inputs) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            live += t.nbytes() as u64;
            slots[*s] = Some(Arc::new(t));
        }
        let mut peak = live;
        let mut buffers = self.arena().map(Arena::take);
        let plan = self.arena().map(|a| &a.plan);
        let planned = |s: usize| plan.and_then(|p| p.buffer_of[s]);
        // Bytes live outside the arena's buffers, and their peak.
        let mut unplanned = live;
        let mut peak_unplanned = unplanned;
        let timed = timed || self.profile != Profile::Off;
        let mut times: Vec<NodeTime> = Vec::with_capacity(if timed { self.steps.len() } else { 0 });
        for step in &self.steps {
            let t0 = timed.then(std::time::Instant::now);
            let outs = if step.takes_over_input() {
                // Last reader of a layout-only op: reuse the buffer instead of copying it.
                let from = step.inputs[0].unwrap();
                let src = slots[from].take().unwrap();
                live -= src.nbytes() as u64;
                if planned(from).is_none() {
                    unplanned -= src.nbytes() as u64;
                }
                let rest: Vec<Option<&Tensor>> = step.inputs.iter().skip(1).map(|s| s.and_then(|s| slots[s].as_deref())).collect();
                let mut all = vec![None];
                all.extend(rest);
                let shape = crate::graph::infer::output_types(&step.node, &{
                    let mut v = all.clone();
                    v[0] = Some(&*src);
                    v
                })?[0]
                    .1
                    .clone();
                let t = Arc::try_unwrap(src).unwrap_or_else(|a| (*a).clone());
                vec![t.reshaped(shape).map_err(|e| e.in_node(&step.node.name, &step.node.op.name()))?]
            } else {
                let ins: Vec<Option<&Tensor>> = step
                    .inputs
                    .iter()
                    .map(|s| s.map(|s| slots[s].as_deref().expect("slot filled before use by topological order")))
                    .collect();
                if step.sized_at_run {
                    check_run_time_size(&step.node, &ins, self.budget)?;
                }
                // The step's leading planned outputs, in order (a kernel allocates them so).
                let offered = buffers.is_some() && step.outputs.first().is_some_and(|&s| planned(s).is_some());
                if let (Some(bufs), Some(plan)) = (buffers.as_mut().filter(|_| offered), plan) {
                    bufs.offer(step.outputs.iter().map_while(|&s| planned(s)), plan);
                }
                let result = eval_contained(&step.node, &ins, step.prepared.as_ref());
                if let Some(bufs) = buffers.as_mut().filter(|_| offered) {
                    bufs.withdraw();
                }
                result?
            };
            for (&s, t) in step.outputs.iter().zip(outs) {
                live += t.nbytes() as u64;
                if planned(s).is_none() {
                    unplanned += t.nbytes() as u64;
                }
                if let Some(old) = slots[s].replace(Arc::new(t)) {
                    live -= old.nbytes() as u64;
                }
            }
            peak = peak.max(live);
            peak_unplanned = peak_unplanned.max(unplanned);
            for &f in &step.frees {
                if let Some(t) = slots[f].take() {
                    live -= t.nbytes() as u64;
                    match (planned(f), buffers.as_mut()) {
                        (Some(b), Some(bufs)) => recycle(bufs, b, t),
                        _ => unplanned -= t.nbytes() as u64,
                    }
                }
            }
            if let Some(t0) = t0 {
                times.push(NodeTime::of(&step.node, t0.elapsed().as_secs_f64() * 1e3));
            }
        }
        self.peak_live.fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
        self.peak_unplanned.fetch_max(peak_unplanned, std::sync::atomic::Ordering::Relaxed);
        self.profile.print(&times);
        // An output's last listing takes its buffer when nothing else holds it; only an output
        // that is also a constant, or listed twice, is copied.
        let outs = self.outputs
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let last = !self.outputs[i + 1..].contains(&s);
                let t = if last { slots[s].take() } else { slots[s].clone() };
                t.map(|t| Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone())).ok_or_else(|| Error::Tensor("output not produced".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        if let (Some(arena), Some(mut bufs)) = (self.arena(), buffers) {
            // Values nothing read stayed in their slots: their buffers too go back.
            for (s, t) in slots.iter_mut().enumerate() {
                if let (Some(b), Some(t)) = (planned(s), t.take()) {
                    recycle(&mut bufs, b, t);
                }
            }
            arena.put(bufs);
        }
        Ok((outs, times))
    }

    /// What the arena planned and holds (None: turned off).
    pub fn arena_stats(&self) -> Option<ArenaStats> {
        self.arena().map(Arena::stats)
    }

    fn arena(&self) -> Option<&Arena> {
        self.arena_on.then_some(&self.arena)
    }
}

/// A dead planned value's vector goes back to its buffer.
fn recycle(buffers: &mut Buffers, buffer: usize, value: Arc<Tensor>) {
    if let Ok(t) = Arc::try_unwrap(value) {
        if let Data::F32(v) = t.into_data() {
            buffers.give_back(buffer, v);
        }
    }
}

/// Refuses a node sized at run time whose outputs exceed `budget` bytes, before its kernel
/// allocates them.
fn check_run_time_size(node: &Node, inputs: &[Option<&Tensor>], budget: u64) -> Result<()> {
    // Inference checked the inputs of every node it could size; these it could not.
    crate::graph::validate::check_tensors(node, inputs).map_err(|e| e.in_node(&node.name, &node.op.name()))?;
    let types = match crate::graph::infer::output_types(node, inputs) {
        Ok(t) => t,
        // Sizes only the kernel finds (NonZero, Unique): it checks its own.
        Err(Error::DataDependent(_)) => return Ok(()),
        Err(e) => return Err(e.in_node(&node.name, &node.op.name())),
    };
    let bytes: u64 = types.iter().map(|(dt, shape)| shape.iter().product::<usize>() as u64 * dt.size() as u64).sum();
    if bytes > budget {
        return Err(Error::Memory(format!("node '{}' ({}) would produce {} at run time ({:?}), over the budget of {}", node.name, node.op.name(), crate::budget::human(bytes), types.iter().map(|t| &t.1).collect::<Vec<_>>(), crate::budget::human(budget))));
    }
    Ok(())
}

/// Runs one kernel with its panics contained: a bug or an unchecked shape inside a kernel fails
/// this run with an error naming the node, and leaves the executable usable.
fn eval_contained(node: &Node, inputs: &[Option<&Tensor>], prepared: Option<&Prepared>) -> Result<Vec<Tensor>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval_node_prepared(node, inputs, prepared))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = crate::error::panic_message(&*payload);
            let shapes: Vec<String> = inputs.iter().map(|t| t.map(|t| format!("{:?}", t.shape())).unwrap_or_else(|| "-".into())).collect();
            Err(Error::Internal { node: node.name.clone(), op: node.op.name(), message: format!("kernel panicked ({msg}) on inputs {}", shapes.join(", ")) })
        }
    }
}
