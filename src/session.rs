//! The embedding API. A [`Session`] owns a loaded model and one compiled plan per set of bound
//! dims (batch, seq, ...); plans are immutable and shared, each `run` has its own state, so a
//! `Session` is `Send + Sync` and serves many threads at once.

use crate::backend::{self, Backend, Executable, RunStats};
use crate::error::{Error, Result};
use crate::graph::{Bindings, Dim, Graph, GraphInput};
use crate::tensor::{DType, Data, Tensor};
use half::f16;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Device to run on (`cpu` for now; `wgpu`, `cuda` as their backends land).
    pub device: String,
    /// Run the graph passes (constant folding, Identity removal, BN folding, activation fusion).
    pub optimize: bool,
    /// Store float tensors as f16 on devices that support it (wgpu with shader-f16); the CPU
    /// ignores it.
    pub f16: bool,
    /// Let GEMMs on NVIDIA tensor cores round their inputs to TF32 (10-bit mantissa: several
    /// times the f32 throughput, about 1e-3 relative error). Off by default; only CUDA uses it.
    pub tf32: bool,
    /// Devices to split the model across by predicted cost (`cpu` among them: inputs and outputs
    /// live in host memory), one plan per set of bound dims; empty: `device` alone. Profiles
    /// come from the cache, measured on first use where there is none.
    pub devices: Vec<String>,
    /// The most bytes a bound model may plan to hold (weights plus peak activations); a batch
    /// that needs more is refused before anything is allocated. None: [`crate::budget::default_budget`].
    pub mem_budget: Option<u64>,
    /// Requests in flight at once through [`Session::submit`]; None: chosen from the plan's
    /// stage times.
    pub inflight: Option<usize>,
    /// What `submit` does when `inflight` requests are already in: wait, or answer `Busy`.
    pub when_full: crate::exec::pipeline::WhenFull,
    /// Virtual devices `devices` may name (their nodes compute on the CPU; `paced=1` ones are
    /// held to their predicted times).
    pub virtual_devices: Vec<crate::cost::DeviceProfile>,
    /// Dynamic: a plan per batch size. Static: one plan for a preset batch, smaller requests
    /// padded to it and their outputs cut back, larger ones refused.
    pub batching: crate::batching::Batching,
    /// Record the stage and copy spans of every submitted request ([`Session::trace`]), for
    /// timelines.
    pub trace: bool,
    /// Split requests of more rows than this into micro-batches of this many, pipelined through
    /// the plan's stages one after another (each size gets its plan), outputs joined; None: whole.
    pub micro_batch: Option<usize>,
    /// CPU threads for this session's runs (its own pool of that many workers; 1: no helper
    /// thread, nothing spins); None: the process's pool, one worker per core.
    pub threads: Option<usize>,
    /// Cores per device (`{"cpu": [0], "wgpu": [1]}`, [`crate::affinity`]): each pipeline stage's
    /// loop, the CPU's workers and a device driver's threads stay on their device's cores, so
    /// devices that compute on host cores (lavapipe, virtual devices) do not take each other's.
    /// Empty: anywhere.
    pub cores: crate::affinity::CoreMap,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { device: "cpu".into(), optimize: true, f16: false, tf32: false, devices: vec![], mem_budget: None, inflight: None, when_full: Default::default(), virtual_devices: vec![], batching: Default::default(), trace: false, threads: None, micro_batch: None, cores: Default::default() }
    }
}

/// A model bound to concrete dims and compiled for the session's device.
pub struct Prepared {
    pub graph: Arc<Graph>,
    pub executable: Arc<dyn Executable>,
    /// The plan, when the session splits the model across devices.
    pub plan: Option<Arc<crate::plan::Plan>>,
    /// The stages `submit` pipelines requests through (started on first submit).
    stages: Mutex<Option<Arc<crate::exec::pipeline::Pipeline>>>,
    stage_source: StageSource,
}

enum StageSource {
    Whole(String),
    Plan(Arc<crate::exec::PlanExecutable>),
}

/// A request submitted to a session; `wait` (or `.await`) gives the named outputs.
pub struct Submitted {
    /// One per micro-batch (one in all without micro-batching), in batch order.
    parts: Vec<Part>,
    names: Vec<String>,
    /// Micro-batching: the outputs' batch axes, to join the parts along.
    join: Option<Vec<Option<usize>>>,
}

/// A pipelined request (or one micro-batch of one) and what its outputs need.
struct Part {
    ticket: crate::exec::pipeline::Ticket,
    /// Static batching: the outputs' batch axes and the request's own batch.
    cut: Option<(Vec<Option<usize>>, usize)>,
    done: Option<Vec<Tensor>>,
}

impl Submitted {
    fn finish(names: Vec<String>, cut: &Option<(Vec<Option<usize>>, usize)>, outs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>> {
        let named: Vec<(String, Tensor)> = names.into_iter().zip(outs).collect();
        match cut {
            Some((axes, batch)) => crate::batching::cut_outputs(named, axes, *batch),
            None => Ok(named),
        }
    }

    /// The parts' outputs, cut and joined.
    fn assemble(names: &[String], join: &Option<Vec<Option<usize>>>, parts: Vec<(Option<(Vec<Option<usize>>, usize)>, Vec<Tensor>)>) -> Result<Vec<(String, Tensor)>> {
        let mut named = parts.into_iter().map(|(cut, outs)| Self::finish(names.to_vec(), &cut, outs)).collect::<Result<Vec<_>>>()?;
        match join {
            Some(axes) if named.len() > 1 => crate::batching::join_outputs(named, axes),
            _ => named.pop().ok_or_else(|| Error::Plan("a request with no parts".into())),
        }
    }

    pub fn wait(self) -> Result<Vec<(String, Tensor)>> {
        let parts = self.parts.into_iter().map(|p| Ok((p.cut, p.ticket.wait()?))).collect::<Result<Vec<_>>>()?;
        Self::assemble(&self.names, &self.join, parts)
    }
}

impl std::future::Future for Submitted {
    type Output = Result<Vec<(String, Tensor)>>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        for p in this.parts.iter_mut().filter(|p| p.done.is_none()) {
            match std::pin::Pin::new(&mut p.ticket).poll(cx) {
                std::task::Poll::Ready(Ok(outs)) => p.done = Some(outs),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
        let parts = this.parts.iter_mut().map(|p| (p.cut.clone(), p.done.take().unwrap_or_default())).collect();
        std::task::Poll::Ready(Self::assemble(&this.names, &this.join, parts))
    }
}

pub struct Session {
    graph: Graph,
    backend: Arc<dyn Backend>,
    options: SessionOptions,
    plans: Mutex<HashMap<Bindings, Arc<Prepared>>>,
    /// Static batching: each output's batch axis, found on first use.
    output_axes: Mutex<Option<Vec<Option<usize>>>>,
}

/// Whether a symbolic dim name denotes the batch (so `--batch` binds it).
pub fn is_batch_dim(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("batch") || l == "n" || l == "b"
}

/// Binds every symbolic input dim: explicit `dims` first, then `batch` for batch-like names and
/// `seq` for the rest.
pub fn default_bindings(graph: &Graph, batch: usize, seq: usize, dims: &Bindings) -> Bindings {
    graph
        .symbolic_dims()
        .into_iter()
        .map(|d| {
            let v = dims.get(&d).copied().unwrap_or(if is_batch_dim(&d) { batch } else { seq });
            (d, v)
        })
        .collect()
}

impl Session {
    pub fn from_path(path: impl AsRef<Path>, options: SessionOptions) -> Result<Session> {
        let path = path.as_ref();
        crate::error::contain("(model load)", "-", || Session::from_graph(crate::onnx::load_model(path)?, options))
    }

    pub fn from_bytes(bytes: &[u8], options: SessionOptions) -> Result<Session> {
        crate::error::contain("(model load)", "-", || Session::from_graph(crate::onnx::load_model_bytes(bytes)?, options))
    }

    pub fn from_graph(graph: Graph, options: SessionOptions) -> Result<Session> {
        let backend = backend::by_name(&options.device)?;
        for (device, cores) in &options.cores {
            crate::affinity::check(cores).map_err(|e| Error::Input(format!("cores for {device}: {}", match e { Error::Input(m) => m, e => e.to_string() })))?;
        }
        Ok(Session { graph, backend, options, plans: Mutex::new(HashMap::new()), output_axes: Mutex::new(None) })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn inputs(&self) -> &[GraphInput] {
        &self.graph.inputs
    }

    pub fn output_names(&self) -> Vec<String> {
        self.graph.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// Binds, infers, optimises and compiles the model for `bindings` (cached).
    pub fn prepare(&self, bindings: &Bindings) -> Result<Arc<Prepared>> {
        if let Some(p) = self.plans.lock().unwrap_or_else(|e| e.into_inner()).get(bindings) {
            return Ok(p.clone());
        }
        let mut g = bind(&self.graph, bindings)?;
        if self.options.optimize {
            crate::passes::optimize(&mut g)?;
        }
        let budget = self.options.mem_budget.unwrap_or_else(crate::budget::default_budget);
        crate::budget::check(&g, bindings, budget)?;
        let options = backend::CompileOptions { f16: self.options.f16, tf32: self.options.tf32, mem_budget: Some(budget), threads: self.options.threads, cores: self.options.cores.clone() };
        let p = if self.options.devices.is_empty() {
            for n in g.g.node_indices() {
                if let backend::Support::No(why) = self.backend.supports(&g, n) {
                    let node = &g.g[n];
                    return Err(Error::Unsupported { node: node.name.clone(), op: node.op.name(), what: format!("{why} on device {}", self.backend.name()) });
                }
            }
            let graph = Arc::new(g);
            let executable = self.backend.compile(graph.clone(), &options)?;
            Arc::new(Prepared { graph, executable, plan: None, stages: Mutex::new(None), stage_source: StageSource::Whole(self.backend.name().to_string()) })
        } else {
            let mut plan = partition_for(&g, bindings, &self.options.devices, &self.options.virtual_devices)?;
            plan.batching = self.options.batching;
            let graph = Arc::new(g);
            let paced = self.options.virtual_devices.iter().filter(|v| v.paced).map(|v| v.device.clone());
            let executable = Arc::new(crate::exec::PlanExecutable::new(graph.clone(), &plan, &options)?.with_paced(paced));
            Arc::new(Prepared { graph, executable: executable.clone(), plan: Some(Arc::new(plan)), stages: Mutex::new(None), stage_source: StageSource::Plan(executable) })
        };
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).insert(bindings.clone(), p.clone());
        Ok(p)
    }

    /// The dims bound by a set of named inputs, after checking names, dtypes and ranks.
    pub fn bindings_for(&self, inputs: &[(String, Tensor)]) -> Result<Bindings> {
        let mut b = Bindings::new();
        for gi in &self.graph.inputs {
            let Some((_, t)) = inputs.iter().find(|(n, _)| n == &gi.name) else {
                return Err(Error::Input(format!("missing input '{}' ({} {})", gi.name, gi.dtype, fmt_dims(&gi.shape))));
            };
            if t.dtype() != gi.dtype {
                return Err(Error::Input(format!("input '{}' is {}, the model expects {}", gi.name, t.dtype(), gi.dtype)));
            }
            if t.rank() != gi.shape.len() {
                return Err(Error::Input(format!("input '{}' has shape {:?}, the model expects {}", gi.name, t.shape(), fmt_dims(&gi.shape))));
            }
            for (d, (&have, want)) in t.shape().iter().zip(&gi.shape).enumerate() {
                match want {
                    Dim::Known(k) if *k != have => {
                        return Err(Error::Input(format!("input '{}' dim {d} is {have}, the model expects {} (shape {})", gi.name, k, fmt_dims(&gi.shape))));
                    }
                    Dim::Sym(s) => {
                        if let Some(&prev) = b.get(s) {
                            if prev != have {
                                return Err(Error::Input(format!("dim '{s}' is {prev} in one input and {have} in '{}'", gi.name)));
                            }
                        }
                        b.insert(s.clone(), have);
                    }
                    _ => {}
                }
            }
        }
        for (n, _) in inputs {
            if !self.graph.inputs.iter().any(|gi| &gi.name == n) {
                let names: Vec<&str> = self.graph.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(Error::Input(format!("unknown input '{n}' (the model's inputs: {names:?})")));
            }
        }
        Ok(b)
    }

    /// Runs the model on named inputs and returns named outputs, in the model's output order.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        Ok(self.run_measured(inputs)?.0)
    }

    /// `run`, with what the backend measured (the device time of the kernels, on CUDA).
    pub fn run_measured(&self, inputs: Vec<(String, Tensor)>) -> Result<(Vec<(String, Tensor)>, RunStats)> {
        // A panic anywhere below (a kernel, a backend, the planner) is this request's error,
        // never the caller's unwind.
        crate::error::contain("(session run)", "-", || {
            // Micro-batches follow each other through the plan's stages.
            let bindings = self.bindings_for(&inputs)?;
            if self.options.micro_batch.is_some_and(|m| crate::batching::request_batch(&self.graph, &bindings).is_some_and(|b| b > m)) {
                return Ok((self.submit(inputs)?.wait()?, RunStats::default()));
            }
            let (inputs, cut, bindings) = self.pad_batch(inputs, bindings)?;
            let plan = self.prepare(&bindings)?;
            let mut by_name: HashMap<String, Tensor> = inputs.into_iter().collect();
            let ordered: Vec<Tensor> = self.graph.inputs.iter().map(|gi| by_name.remove(&gi.name).ok_or_else(|| Error::Input(format!("missing input '{}'", gi.name)))).collect::<Result<_>>()?;
            let (outs, stats) = plan.executable.run_measured(ordered)?;
            Ok((Submitted::finish(self.output_names(), &cut, outs)?, stats))
        })
    }

    /// Static batching: a smaller request padded to the session's batch, with what cutting
    /// its outputs back needs.
    /// `bindings` are the request's; the padded request's come back with it.
    #[allow(clippy::type_complexity)]
    fn pad_batch(&self, inputs: Vec<(String, Tensor)>, bindings: Bindings) -> Result<(Vec<(String, Tensor)>, Option<(Vec<Option<usize>>, usize)>, Bindings)> {
        let crate::batching::Batching::Static { batch } = self.options.batching else { return Ok((inputs, None, bindings)) };
        match crate::batching::request_batch(&self.graph, &bindings) {
            Some(have) if have != batch => {
                let padded = crate::batching::pad_inputs(&self.graph, inputs, have, batch)?;
                let bindings = self.bindings_for(&padded)?;
                Ok((padded, Some((self.output_batch_axes()?, have)), bindings))
            }
            _ => Ok((inputs, None, bindings)),
        }
    }

    /// Queues a request through the session's pipeline (one stage per partition of its plan,
    /// or the whole model on its device) and returns at once; at most `inflight` requests are
    /// in at a time (then `submit` waits, or answers `Busy`). A request that fails fails alone.
    pub fn submit(&self, inputs: Vec<(String, Tensor)>) -> Result<Submitted> {
        crate::error::contain("(session submit)", "-", || {
            let chunks = self.micro_batches(inputs)?;
            let join = if chunks.len() > 1 { Some(self.output_batch_axes()?) } else { None };
            let parts = chunks.into_iter().map(|c| self.submit_part(c)).collect::<Result<Vec<_>>>()?;
            Ok(Submitted { parts, names: self.output_names(), join })
        })
    }

    fn submit_part(&self, inputs: Vec<(String, Tensor)>) -> Result<Part> {
        let bindings = self.bindings_for(&inputs)?;
        let (inputs, cut, bindings) = self.pad_batch(inputs, bindings)?;
        let prepared = self.prepare(&bindings)?;
        let pipeline = self.pipeline(&prepared)?;
        let mut by_name: HashMap<String, Tensor> = inputs.into_iter().collect();
        let ordered: Vec<Tensor> = self.graph.inputs.iter().map(|gi| by_name.remove(&gi.name).ok_or_else(|| Error::Input(format!("missing input '{}'", gi.name)))).collect::<Result<_>>()?;
        Ok(Part { ticket: pipeline.submit(ordered)?, cut, done: None })
    }

    /// The request as micro-batches of [`SessionOptions::micro_batch`] rows (the request whole
    /// when it is not larger, or the option is unset).
    fn micro_batches(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<Vec<(String, Tensor)>>> {
        let Some(micro) = self.options.micro_batch else { return Ok(vec![inputs]) };
        let bindings = self.bindings_for(&inputs)?;
        match crate::batching::request_batch(&self.graph, &bindings) {
            Some(batch) if batch > micro => crate::batching::split_inputs(&self.graph, &inputs, batch, micro),
            _ if micro == 0 => Err(Error::Input("micro_batch must be at least 1".into())),
            _ => Ok(vec![inputs]),
        }
    }

    /// Each output's batch axis, found once.
    fn output_batch_axes(&self) -> Result<Vec<Option<usize>>> {
        let mut axes = self.output_axes.lock().unwrap_or_else(|e| e.into_inner());
        if axes.is_none() {
            *axes = Some(crate::batching::output_batch_axes(&self.graph)?);
        }
        Ok(axes.clone().unwrap_or_default())
    }

    /// The spans submitted requests at `bindings` left so far (with [`SessionOptions::trace`];
    /// None before the first submit at those dims).
    pub fn trace(&self, bindings: &Bindings) -> Option<Arc<crate::exec::trace::Trace>> {
        let prepared = self.plans.lock().unwrap_or_else(|e| e.into_inner()).get(bindings).cloned()?;
        let slot = prepared.stages.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().and_then(|pl| pl.trace_handle())
    }

    fn pipeline(&self, p: &Prepared) -> Result<Arc<crate::exec::pipeline::Pipeline>> {
        let mut slot = p.stages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pl) = slot.as_ref() {
            return Ok(pl.clone());
        }
        let stages = match &p.stage_source {
            StageSource::Whole(device) => vec![crate::exec::single_stage(&p.graph, device, p.executable.clone(), 0.0).on_cores(self.options.cores.get(device).map(Vec::as_slice).unwrap_or(&[]))],
            StageSource::Plan(exe) => exe.stages(),
        };
        let pl = Arc::new(crate::exec::pipeline::Pipeline::new(p.graph.clone(), stages, self.options.inflight, self.options.when_full, self.options.trace)?);
        *slot = Some(pl.clone());
        Ok(pl)
    }

    /// Seeded random inputs for `bindings`: floats uniform in [-1, 1), integers in [0, 10)
    /// (small enough to index typical embedding tables), bools random.
    pub fn random_inputs(&self, bindings: &Bindings, seed: u64) -> Result<Vec<(String, Tensor)>> {
        let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        self.graph
            .inputs
            .iter()
            .map(|gi| {
                let shape: Vec<usize> = gi
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Known(k) => Ok(*k),
                        Dim::Sym(s) => bindings.get(s).copied().ok_or_else(|| Error::Input(format!("dim '{s}' of input '{}' is not bound", gi.name))),
                    })
                    .collect::<Result<_>>()?;
                let n = crate::tensor::checked_numel(&shape)?;
                let mut uf = || ((next() >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
                let data = match gi.dtype {
                    DType::F32 => Data::F32((0..n).map(|_| uf() as f32).collect()),
                    DType::F64 => Data::F64((0..n).map(|_| uf()).collect()),
                    DType::F16 => Data::F16((0..n).map(|_| f16::from_f64(uf())).collect()),
                    DType::BF16 => Data::BF16((0..n).map(|_| half::bf16::from_f64(uf())).collect()),
                    DType::Bool => Data::Bool((0..n).map(|_| uf() > 0.0).collect()),
                    dt => crate::backend::cpu::elementwise::cast(&Tensor::new(vec![n], Data::I64((0..n).map(|_| ((uf() + 1.0) * 5.0) as i64).collect()))?, dt)?.into_data(),
                };
                Ok((gi.name.clone(), Tensor::new(shape, data)?))
            })
            .collect()
    }
}

/// Plans a bound graph across `devices` with the cached (or newly measured) profiles.
fn partition_for(g: &Graph, bindings: &Bindings, devices: &[String], virtuals: &[crate::cost::DeviceProfile]) -> Result<crate::plan::Plan> {
    let (profiles, _) = crate::cost::store::resolve(devices, None, virtuals, false, &mut |_, _, _, _| {})?;
    let model = crate::cost::Roofline::new(profiles);
    let mut backends = HashMap::new();
    for d in devices {
        backends.insert(d.clone(), backend::by_name(crate::exec::executes_on(d))?);
    }
    let support = |d: &str, n| backends[d].supports(g, n);
    let problem = crate::partition::Problem::new(g, &model, devices, &Default::default(), &support)?;
    let mut plan = crate::partition::partition(&problem, &crate::partition::Auto)?;
    plan.bindings = bindings.clone();
    Ok(plan)
}

/// Binds `graph` and infers every value, folding plan-time constants with the CPU evaluator.
pub fn bind(graph: &Graph, bindings: &Bindings) -> Result<Graph> {
    graph.bind(bindings, Some(&crate::backend::cpu::eval_node))
}

pub fn fmt_dims(d: &[Dim]) -> String {
    format!("[{}]", d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}
