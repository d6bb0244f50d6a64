//! Pipelined execution: one worker thread per stage (a plan's partition, and where a virtual
//! device is paced, the copies into it), stages joined by bounded crossbeam channels, requests
//! flowing through in order, so while one device computes request i the next works on request
//! i−1. At most `inflight` requests are inside at once; a full pipeline blocks `submit` or
//! answers [`Error::Busy`]. A stage that fails a request fails that request only: the error
//! travels with it to its ticket and the stages after it pass it along. Dropping the pipeline
//! drains what is in flight and joins the workers.

use super::promise::Promise;
use super::trace::{Lane, Span, Trace};
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::Tensor;
use crossbeam_channel::{bounded, Receiver, Sender};
use petgraph::stable_graph::NodeIndex;
use std::sync::Arc;
use std::time::Instant;

/// What a stage does with a request.
pub enum Work {
    /// Runs an executable on the values it reads, adding the values it writes.
    Compute { exe: Arc<dyn Executable>, inputs_from: Vec<(NodeIndex, usize)>, outputs_to: Vec<(NodeIndex, usize)> },
    /// Holds the request for a copy's predicted time (a paced virtual device's link; real
    /// devices copy inside their executables).
    Copy { bytes: u64 },
}

/// One stage: its work, where it runs, and what the plan predicts it takes.
pub struct Stage {
    pub name: String,
    pub device: String,
    pub work: Work,
    pub predicted_ms: f64,
    /// Hold every run to at least `predicted_ms` (virtual devices that stand for hardware).
    pub paced: bool,
    /// The cores the stage's loop runs on ([`crate::affinity`]); empty: anywhere.
    pub cores: Vec<usize>,
}

impl Stage {
    /// The stage with its loop on `cores` (empty: anywhere).
    pub fn on_cores(mut self, cores: &[usize]) -> Stage {
        self.cores = cores.to_vec();
        self
    }
}

/// When the pipeline is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// `submit` waits for a slot.
    #[default]
    Block,
    /// `submit` returns [`Error::Busy`] at once.
    Busy,
}

struct Job {
    id: u64,
    values: super::Values,
    failed: Option<Error>,
    reply: Arc<Promise<Result<Vec<Tensor>>>>,
    submitted: Instant,
}

/// A request in flight; `wait` (or `.await`) gives its outputs in the graph's output order.
pub struct Ticket {
    pub id: u64,
    promise: Arc<Promise<Result<Vec<Tensor>>>>,
}

impl Ticket {
    pub fn wait(self) -> Result<Vec<Tensor>> {
        self.promise.wait()
    }
}

impl std::future::Future for Ticket {
    type Output = Result<Vec<Tensor>>;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.promise.poll(cx)
    }
}

pub struct Pipeline {
    graph: Arc<Graph>,
    entry: Option<Sender<Job>>,
    slots: (Sender<()>, Receiver<()>),
    when_full: WhenFull,
    workers: Vec<std::thread::JoinHandle<()>>,
    next_id: std::sync::atomic::AtomicU64,
    trace: Option<Arc<Trace>>,
    pub inflight: usize,
}

/// In-flight requests worth keeping for stages of these predicted times: enough that every
/// stage has one while the slowest works, plus one waiting.
pub fn default_inflight(stage_ms: &[f64]) -> usize {
    let slowest = stage_ms.iter().cloned().fold(0.0, f64::max);
    let total: f64 = stage_ms.iter().sum();
    if slowest <= 0.0 {
        return stage_ms.len().max(1) + 1;
    }
    ((total / slowest).ceil() as usize + 1).clamp(2, 64)
}

impl Pipeline {
    /// Starts a worker per stage. `inflight` None: [`default_inflight`] of the stages' times.
    pub fn new(graph: Arc<Graph>, stages: Vec<Stage>, inflight: Option<usize>, when_full: WhenFull, trace: bool) -> Result<Pipeline> {
        if stages.is_empty() {
            return Err(Error::Plan("a pipeline needs at least one stage".into()));
        }
        let inflight = inflight.unwrap_or_else(|| default_inflight(&stages.iter().map(|s| s.predicted_ms).collect::<Vec<_>>())).max(1);
        let trace = trace.then(|| Arc::new(Trace::new()));
        let (entry, mut rx) = bounded::<Job>(inflight);
        let slots = bounded::<()>(inflight);
        for _ in 0..inflight {
            slots.0.send(()).expect("slot channel has room");
        }
        for s in stages.iter().filter(|s| !s.cores.is_empty()) {
            crate::affinity::check(&s.cores).map_err(|e| Error::Plan(format!("stage '{}' on {}: {e}", s.name, s.device)))?;
        }
        let mut workers = vec![];
        let n = stages.len();
        let (started, starts) = bounded::<Result<()>>(n);
        for (i, stage) in stages.into_iter().enumerate() {
            let last = i + 1 == n;
            let (tx, next_rx) = bounded::<Job>(inflight);
            let (graph, slot_back, trace, started) = (graph.clone(), slots.0.clone(), trace.clone(), started.clone());
            let input = rx;
            rx = next_rx;
            let handle = std::thread::Builder::new()
                .name(format!("hetsched {}", stage.name))
                .spawn(move || {
                    let serving = match &stage.work {
                        Work::Compute { exe, .. } => Some(exe.clone()),
                        Work::Copy { .. } => None,
                    };
                    // Pinned where the loop runs: `serve` may move it to another thread.
                    let work: Box<dyn FnOnce() + Send> = Box::new(move || {
                        let pinned = if stage.cores.is_empty() { Ok(()) } else { crate::affinity::pin_current(&stage.cores) };
                        let _ = started.send(pinned.map_err(|e| Error::Plan(format!("stage '{}' on {}: {e}", stage.name, stage.device))));
                        for mut job in input {
                            if job.failed.is_none() {
                                let t0 = Instant::now();
                                if let Err(e) = run_stage(&stage, &graph, &mut job.values) {
                                    job.failed = Some(e);
                                }
                                if let Some(tr) = &trace {
                                    let lane = match stage.work { Work::Compute { .. } => Lane::Compute, Work::Copy { .. } => Lane::Copy };
                                    let bytes = match stage.work { Work::Copy { bytes } => bytes, _ => 0 };
                                    tr.record(Span { request: job.id, stage: stage.name.clone(), device: stage.device.clone(), lane, start: t0, end: Instant::now(), predicted_ms: stage.predicted_ms, bytes });
                                }
                            }
                            if last {
                                let result = match job.failed.take() {
                                    Some(e) => Err(e),
                                    None => super::graph_outputs(&graph, &job.values),
                                };
                                if let Some(tr) = &trace {
                                    tr.finish(job.id, job.submitted);
                                }
                                // The slot first: a caller woken by the reply may submit at once and must
                                // find the slot this request held free again.
                                let _ = slot_back.send(());
                                job.reply.set(result);
                            } else if tx.send(job).is_err() {
                                break;
                            }
                        }
                    });
                    // The stage's executable picks where its runs start (the CPU's one-thread pool).
                    match serving {
                        Some(exe) => exe.serve(work),
                        None => work(),
                    }
                })
                .map_err(|e| Error::Plan(format!("cannot start a pipeline worker: {e}")))?;
            workers.push(handle);
        }
        drop(started);
        for r in starts.iter().take(n) {
            r?;
        }
        Ok(Pipeline { graph, entry: Some(entry), slots, when_full, workers, next_id: Default::default(), trace, inflight })
    }

    /// Queues a request (inputs in the graph's input order).
    pub fn submit(&self, inputs: Vec<Tensor>) -> Result<Ticket> {
        let g = &self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", g.inputs.len(), inputs.len())));
        }
        match self.when_full {
            WhenFull::Block => self.slots.1.recv().map_err(|_| Error::Plan("the pipeline has shut down".into()))?,
            WhenFull::Busy => self.slots.1.try_recv().map_err(|_| Error::Busy(format!("all {} pipeline slots are taken; retry when a request finishes", self.inflight)))?,
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let values = g.inputs.iter().zip(inputs).map(|(gi, t)| ((gi.node, 0), t)).collect();
        let promise = Arc::new(Promise::new());
        let job = Job { id, values, failed: None, reply: promise.clone(), submitted: Instant::now() };
        let entry = self.entry.as_ref().ok_or_else(|| Error::Plan("the pipeline has shut down".into()))?;
        entry.send(job).map_err(|_| Error::Plan("the pipeline has shut down".into()))?;
        Ok(Ticket { id, promise })
    }

    /// The spans recorded so far (empty unless made with `trace`).
    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_deref()
    }

    /// The trace, shared, to read after the pipeline is gone.
    pub fn trace_handle(&self) -> Option<Arc<Trace>> {
        self.trace.clone()
    }
}

impl Drop for Pipeline {
    /// Drains: workers finish what is in flight, then exit.
    fn drop(&mut self) {
        self.entry.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn run_stage(stage: &Stage, graph: &Graph, values: &mut super::Values) -> Result<()> {
    let t0 = Instant::now();
    if let Work::Compute { exe, inputs_from, outputs_to } = &stage.work {
        super::run_partition(graph, &stage.name, &**exe, inputs_from, outputs_to, values)?;
    }
    if stage.paced {
        super::pace(t0, stage.predicted_ms);
    }
    Ok(())
}
