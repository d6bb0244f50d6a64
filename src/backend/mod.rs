//! Devices. A [`Backend`] answers which nodes it supports (the partitioner's question) and
//! compiles a bound graph (or a piece of one) into an [`Executable`].

pub mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod gpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::error::Result;
use crate::graph::Graph;
use petgraph::stable_graph::NodeIndex;
use crate::tensor::Tensor;
use std::sync::Arc;

/// Whether a backend can run a node, and if not, why.
#[derive(Clone, Debug, PartialEq)]
pub enum Support {
    Yes,
    No(String),
}

/// What `hetsched devices` prints about a device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub kind: String,
    pub available: bool,
    pub details: Vec<(String, String)>,
}

pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    fn info(&self) -> DeviceInfo;
    /// Can this device run `node` (with its inferred input/output types)?
    fn supports(&self, graph: &Graph, node: NodeIndex) -> Support;
    /// Compiles a bound graph (every value typed and shaped) for repeated execution.
    fn compile(&self, graph: Arc<Graph>, options: &CompileOptions) -> Result<Arc<dyn Executable>>;
}

/// How a backend should compile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Store float tensors as f16 where the device supports it (half the memory; looser accuracy).
    pub f16: bool,
    /// Allow TF32 tensor-core GEMMs (CUDA); see [`crate::SessionOptions::tf32`].
    pub tf32: bool,
    /// The most bytes one node sized only at run time (NonZero, a ConstantOfShape of computed
    /// dims, ...) may produce; None: [`crate::budget::default_budget`].
    pub mem_budget: Option<u64>,
    /// CPU threads (a pool of that many workers; 1: no helper thread at all); None: one per core
    /// (or one per core the CPU is given in `cores`).
    pub threads: Option<usize>,
    /// Cores per device ([`crate::affinity`]): the CPU's workers, and the threads a device's driver
    /// started, run there; a device not named runs anywhere.
    pub cores: crate::affinity::CoreMap,
}

impl CompileOptions {
    /// The cores `device` was given (empty: anywhere).
    pub fn cores_for(&self, device: &str) -> &[usize] {
        self.cores.get(device).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// `HETSCHED_PROFILE`: per-run timings printed to stderr by the CPU and CUDA executables.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Off,
    /// Any other value of `HETSCHED_PROFILE`: time per op type.
    PerOpType,
    /// `HETSCHED_PROFILE=nodes`: time per node, in execution order.
    PerNode,
}

impl Profile {
    pub(crate) fn from_env() -> Profile {
        match std::env::var_os("HETSCHED_PROFILE") {
            None => Profile::Off,
            Some(v) if v == "nodes" => Profile::PerNode,
            Some(_) => Profile::PerOpType,
        }
    }

    /// Prints one run's node times to stderr: per node in execution order, or summed per op type.
    pub(crate) fn print(self, times: &[NodeTime]) {
        match self {
            Profile::Off => {}
            Profile::PerNode => {
                for (i, t) in times.iter().enumerate() {
                    eprintln!("{i:>4} {:<24} {:<40} {:>9.3} ms", t.op_type, t.node, t.ms);
                }
            }
            Profile::PerOpType => {
                let mut by_op: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
                for t in times {
                    let e = by_op.entry(&t.op_type).or_default();
                    e.0 += t.ms;
                    e.1 += 1;
                }
                for (op, (ms, n)) in by_op {
                    eprintln!("{op:<24} {n:>5} nodes {ms:>9.3} ms");
                }
            }
        }
    }
}

/// Time one node took in one run (host wall clock around its kernel or launches).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeTime {
    pub node: String,
    /// The op as `inspect` names it, grouped convolutions marked `/grouped`.
    pub op_type: String,
    pub ms: f64,
}

impl NodeTime {
    pub fn of(node: &crate::graph::Node, ms: f64) -> NodeTime {
        use crate::graph::Op;
        let grouped = if matches!(node.op, Op::Conv { group, .. } if group > 1) { "/grouped" } else { "" };
        // Volumetric kernels run other loops than planar ones: timed and calibrated apart.
        // (The output's rank says it: a kernel_shape left to inference may be empty.)
        let rank = node.outputs.first().and_then(|o| o.shape.as_ref()).map(|s| s.len());
        let volumetric = match &node.op {
            Op::Conv { window, .. } | Op::Pool { window, .. } | Op::ConvTranspose { window, .. } if window.kernel_shape.len() == 3 || rank == Some(5) => "/3d",
            _ => "",
        };
        let variant = match &node.op {
            // A transpose that moves the innermost axis gathers element by element; one that
            // keeps it copies whole rows (attention's head split, a channel shuffle).
            Op::Transpose { perm } if rank.is_some_and(|r| r > 1 && perm.as_ref().is_none_or(|p| p.last() != Some(&(r - 1)))) => "/strided",
            // A 1x1 convolution is a matrix product, but not every device runs it as its
            // MatMul (a GPU's convolution kernel may): timed and calibrated apart.
            Op::Conv { window, group: 1, .. } if !window.kernel_shape.is_empty() && window.kernel_shape.iter().all(|&k| k == 1) && rank == Some(4) => "/pointwise",
            _ => "",
        };
        NodeTime { node: node.name.clone(), op_type: format!("{}{grouped}{volumetric}{variant}", node.op.name()), ms }
    }
}

/// A compiled graph or partition. Immutable and shared; each `run` has its own state, so many
/// threads may run it at once.
pub trait Executable: Send + Sync {
    /// Inputs in the graph's input order; outputs in its output order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;

    /// `run`, with what the backend measured on the way. The default measures nothing.
    fn run_measured(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, RunStats)> {
        Ok((self.run(inputs)?, RunStats::default()))
    }

    /// `run`, timing every node (for calibration and fidelity checks). Backends that cannot
    /// time single nodes say so.
    fn run_timed(&self, _inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<NodeTime>)> {
        Err(crate::error::Error::Unsupported { node: String::new(), op: String::new(), what: "this backend cannot time single nodes".into() })
    }

    /// Starts a run and returns at once where the device works asynchronously (uploads queued,
    /// one submit, read-back mapped); `wait` collects the outputs. A pipeline executor overlaps
    /// other work between the two. The default runs synchronously.
    fn submit<'a>(&'a self, inputs: Vec<Tensor>) -> Result<Box<dyn PendingRun + 'a>> {
        Ok(Box::new(Ready(self.run(inputs))))
    }

    /// Runs `work`, a loop on this thread that calls `run` again and again (a pipeline stage's
    /// worker), from where those runs start without a hand-over: the CPU with one thread enters
    /// its one-worker pool once for the whole loop, where each run would otherwise be handed to
    /// that worker and back (two wake-ups per run). The default runs `work` as it is.
    fn serve<'a>(&self, work: Box<dyn FnOnce() + Send + 'a>) {
        work()
    }

    /// The memory it holds on each device it runs on, measured. The default knows nothing.
    fn memory(&self) -> std::collections::BTreeMap<String, MemoryUse> {
        Default::default()
    }
}

/// Memory an executable holds on one device, as measured (beside the cost model's prediction,
/// [`crate::cost::memory::Footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUse {
    /// Constants (weights) kept for its runs.
    pub weight_bytes: u64,
    /// Activations: on a GPU the allocations that hold them (made at compile time, shared by
    /// [`gpu::arena`], inputs and outputs included); on the CPU the most bytes live at once in
    /// any run so far.
    pub activation_bytes: u64,
    /// Scratch kept besides (cuBLAS's workspace).
    pub workspace_bytes: u64,
    /// What the CPU's activation arena holds beyond the activations' live peak: values of
    /// different sizes take turns in a buffer sized for the largest, and every run in progress
    /// at once has its own set of buffers.
    pub arena_overhead_bytes: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.weight_bytes + self.activation_bytes + self.workspace_bytes + self.arena_overhead_bytes
    }

    pub fn add(&mut self, other: MemoryUse) {
        self.weight_bytes += other.weight_bytes;
        self.activation_bytes += other.activation_bytes;
        self.workspace_bytes += other.workspace_bytes;
        self.arena_overhead_bytes += other.arena_overhead_bytes;
    }
}

/// Measurements of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Device time from the inputs being on the device to the outputs being computed: the
    /// kernels alone, without host copies or transfers (what a peer timing device-resident
    /// tensors measures). `None` where the backend does not time its device.
    pub device_ms: Option<f64>,
}

/// A run in flight.
pub trait PendingRun {
    fn wait(self: Box<Self>) -> Result<Vec<Tensor>>;
}

struct Ready(Result<Vec<Tensor>>);

impl PendingRun for Ready {
    fn wait(self: Box<Self>) -> Result<Vec<Tensor>> {
        self.0
    }
}

/// The backend registered under `name`, or an error saying why it cannot be had.
pub fn by_name(name: &str) -> Result<Arc<dyn Backend>> {
    match name {
        "cpu" => Ok(Arc::new(cpu::CpuBackend::new())),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Arc::new(wgpu::WgpuBackend::new()?)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err(crate::error::Error::DeviceUnavailable { device: name.into(), reason: "built without the `wgpu` cargo feature".into() }),
        #[cfg(feature = "cuda")]
        "cuda" => cuda::open(),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(crate::error::Error::DeviceUnavailable { device: name.into(), reason: "built without the `cuda` cargo feature (cargo build --features cuda)".into() }),
        other => Err(crate::error::Error::DeviceUnavailable { device: other.into(), reason: "unknown device name (known: cpu, wgpu, cuda)".into() }),
    }
}

/// Every backend this build knows, available or not.
pub fn all() -> Vec<DeviceInfo> {
    let mut v = vec![cpu::CpuBackend::new().info()];
    for name in ["wgpu", "cuda"] {
        match by_name(name) {
            Ok(b) => v.push(b.info()),
            Err(e) => v.push(DeviceInfo { name: name.into(), kind: name.into(), available: false, details: vec![("reason".into(), e.to_string())] }),
        }
    }
    v
}
