//! Running a plan: each partition compiled by its device's backend from `Graph::subgraph`, run
//! in order, boundary tensors handed from one partition to the next through host memory (each
//! executable uploads what it reads and downloads what it writes; between two GPUs that is two
//! hops). [`PlanExecutable`] runs them in sequence; [`pipeline::Pipeline`] runs the same steps
//! as stages with several requests in flight, and [`trace`] records and draws what it did.

pub mod pipeline;
pub mod promise;
pub mod trace;

use crate::backend::{self, CompileOptions, Executable};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::plan::Plan;
use crate::tensor::Tensor;
use petgraph::stable_graph::NodeIndex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The real device a plan's device runs on: itself, or the CPU for a virtual device.
pub fn executes_on(device: &str) -> &str {
    match device {
        "cpu" | "wgpu" | "cuda" => device,
        _ => "cpu",
    }
}

struct Step {
    device: String,
    exe: Arc<dyn Executable>,
    inputs_from: Vec<(NodeIndex, usize)>,
    outputs_to: Vec<(NodeIndex, usize)>,
    predicted_ms: f64,
    /// The plan's copies into this partition: bytes and predicted ms.
    copy_in: (u64, f64),
}

/// A plan compiled for its devices; runs like any executable (inputs in the graph's order).
pub struct PlanExecutable {
    graph: Arc<Graph>,
    steps: Vec<Step>,
    /// The plan's copies of graph outputs to the host: bytes and predicted ms.
    copy_out: (u64, f64),
    /// Devices whose steps (and copies) are held to their predicted times.
    paced: HashSet<String>,
    /// Cores per plan device, for the stages' loops.
    cores: crate::affinity::CoreMap,
}

/// Measured time of one partition in one run.
#[derive(Clone, Debug)]
pub struct StepTime {
    pub partition: usize,
    pub device: String,
    pub ms: f64,
}

impl PlanExecutable {
    /// Compiles every partition of `plan` (made for `graph`, already checked with
    /// [`Plan::check_graph`]) on its device.
    pub fn new(graph: Arc<Graph>, plan: &Plan, options: &CompileOptions) -> Result<PlanExecutable> {
        let mut by_name: HashMap<&str, NodeIndex> = HashMap::new();
        for n in graph.g.node_indices() {
            if by_name.insert(graph.g[n].name.as_str(), n).is_some() && plan.nodes.iter().any(|p| p.name == graph.g[n].name) {
                return Err(Error::Plan(format!("node name '{}' is not unique; a plan names nodes", graph.g[n].name)));
            }
        }
        let mut backends: HashMap<String, Arc<dyn backend::Backend>> = HashMap::new();
        let mut steps = vec![];
        for part in &plan.partitions {
            let set: HashSet<NodeIndex> = part
                .nodes
                .iter()
                .map(|name| by_name.get(name.as_str()).copied().ok_or_else(|| Error::Plan(format!("the plan's node '{name}' is not in the model"))))
                .collect::<Result<_>>()?;
            let real = executes_on(&part.device).to_string();
            let backend = match backends.get(&real) {
                Some(b) => b.clone(),
                None => {
                    let b = backend::by_name(&real)?;
                    backends.insert(real.clone(), b.clone());
                    b
                }
            };
            let sub = graph.subgraph(&set)?;
            for n in sub.graph.g.node_indices() {
                if let backend::Support::No(why) = backend.supports(&sub.graph, n) {
                    let node = &sub.graph.g[n];
                    return Err(Error::Unsupported { node: node.name.clone(), op: node.op.name(), what: format!("{why} on device {} (partition {})", part.device, part.id) });
                }
            }
            let exe = backend.compile(Arc::new(sub.graph), &options_for(options, &part.device))?;
            let reads: HashSet<&str> = sub.inputs_from.iter().map(|&(n, s)| graph.g[n].outputs[s].name.as_str()).collect();
            let copies = plan.transfers.iter().filter(|t| t.to == part.device && reads.contains(t.tensor.as_str()));
            let copy_in = copies.fold((0, 0.0), |(b, ms), t| (b + t.bytes, ms + t.predicted_ms));
            steps.push(Step { device: part.device.clone(), exe, inputs_from: sub.inputs_from, outputs_to: sub.outputs_to, predicted_ms: part.predicted_ms, copy_in });
        }
        let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
        let copy_out = plan.transfers.iter().filter(|t| t.to == "cpu" && outputs.contains(t.tensor.as_str())).fold((0, 0.0), |(b, ms), t| (b + t.bytes, ms + t.predicted_ms));
        Ok(PlanExecutable { graph, steps, copy_out, paced: HashSet::new(), cores: options.cores.clone() })
    }

    /// The cores a plan device's stage runs on: its own, or its real device's (empty: anywhere).
    fn cores_of(&self, device: &str) -> Vec<usize> {
        self.cores.get(device).or_else(|| self.cores.get(executes_on(device))).cloned().unwrap_or_default()
    }

    /// Holds the steps on these (virtual) devices, and the copies to and from them, to their
    /// predicted times when pipelined: a stand-in for hardware this machine does not have.
    pub fn with_paced(mut self, devices: impl IntoIterator<Item = String>) -> Self {
        self.paced = devices.into_iter().collect();
        self
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// The plan as pipeline stages: each partition, and before it the copies into it where
    /// either end is paced (real devices copy inside their executables).
    pub fn stages(&self) -> Vec<pipeline::Stage> {
        let mut out = vec![];
        let mut prev = "cpu".to_string();
        for (i, s) in self.steps.iter().enumerate() {
            let paced = self.paced.contains(&s.device);
            if s.copy_in.1 > 0.0 && (paced || self.paced.contains(&prev)) {
                out.push(pipeline::Stage { name: format!("copy to {i}"), device: s.device.clone(), work: pipeline::Work::Copy { bytes: s.copy_in.0 }, predicted_ms: s.copy_in.1, paced: true, cores: self.cores_of(&s.device) });
            }
            out.push(pipeline::Stage {
                name: format!("partition {i}"),
                device: s.device.clone(),
                work: pipeline::Work::Compute { exe: s.exe.clone(), inputs_from: s.inputs_from.clone(), outputs_to: s.outputs_to.clone() },
                predicted_ms: s.predicted_ms,
                paced,
                cores: self.cores_of(&s.device),
            });
            prev = s.device.clone();
        }
        if self.copy_out.1 > 0.0 && self.steps.iter().any(|s| self.paced.contains(&s.device)) {
            out.push(pipeline::Stage { name: "copy to host".into(), device: "cpu".into(), work: pipeline::Work::Copy { bytes: self.copy_out.0 }, predicted_ms: self.copy_out.1, paced: true, cores: self.cores_of("cpu") });
        }
        out
    }

    /// Runs the plan; with `timed`, also each partition's time.
    pub fn run_steps(&self, inputs: Vec<Tensor>, timed: bool) -> Result<(Vec<Tensor>, Vec<StepTime>)> {
        let g = &self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", g.inputs.len(), inputs.len())));
        }
        let mut values: Values = g.inputs.iter().zip(inputs).map(|(gi, t)| ((gi.node, 0), t)).collect();
        let mut times = vec![];
        for (i, s) in self.steps.iter().enumerate() {
            let t0 = std::time::Instant::now();
            run_partition(g, &format!("partition {i}"), &*s.exe, &s.inputs_from, &s.outputs_to, &mut values)?;
            if self.paced.contains(&s.device) {
                pace(t0, s.predicted_ms + s.copy_in.1);
            }
            if timed {
                times.push(StepTime { partition: i, device: s.device.clone(), ms: t0.elapsed().as_secs_f64() * 1e3 });
            }
        }
        Ok((graph_outputs(g, &values)?, times))
    }
}

/// A request's values by (node, output slot), as partitions write them.
pub(crate) type Values = HashMap<(NodeIndex, usize), Tensor>;

/// Runs one partition's executable on the values it reads (written by an earlier partition,
/// or folded by inference), adding the values it writes. A panic inside fails this run only.
pub(crate) fn run_partition(graph: &Graph, name: &str, exe: &dyn Executable, inputs_from: &[(NodeIndex, usize)], outputs_to: &[(NodeIndex, usize)], values: &mut Values) -> Result<()> {
    let ins = inputs_from
        .iter()
        .map(|&k| value(graph, values, k).ok_or_else(|| Error::Plan(format!("{name} reads '{}' before any partition wrote it", graph.g[k.0].outputs[k.1].name))))
        .collect::<Result<Vec<_>>>()?;
    let outs = crate::error::contain(name, "-", || exe.run(ins))?;
    for (&k, t) in outputs_to.iter().zip(outs) {
        values.insert(k, t);
    }
    Ok(())
}

/// Holds a step that started at `t0` until `predicted_ms` have passed (a paced virtual device).
pub(crate) fn pace(t0: std::time::Instant, predicted_ms: f64) {
    let target = std::time::Duration::from_secs_f64(predicted_ms.max(0.0) / 1e3);
    if let Some(rest) = target.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
}

/// The graph's outputs, in its order, from a finished request's values.
pub(crate) fn graph_outputs(graph: &Graph, values: &Values) -> Result<Vec<Tensor>> {
    graph.outputs.iter().map(|o| value(graph, values, (o.node, o.slot)).ok_or_else(|| Error::Plan(format!("output '{}' was not produced", o.name)))).collect()
}

/// A value a partition wrote, or one inference computed (folded), read where it stands.
fn value(graph: &Graph, values: &Values, k: (NodeIndex, usize)) -> Option<Tensor> {
    values.get(&k).cloned().or_else(|| graph.g[k.0].outputs.get(k.1).and_then(|v| v.value.as_ref()).map(|t| (**t).clone()))
}

impl Executable for PlanExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(self.run_steps(inputs, false)?.0)
    }

    /// Each plan device's partitions together (their peaks added: pipelined, they coexist).
    fn memory(&self) -> std::collections::BTreeMap<String, backend::MemoryUse> {
        let mut out: std::collections::BTreeMap<String, backend::MemoryUse> = Default::default();
        for s in &self.steps {
            for m in s.exe.memory().into_values() {
                out.entry(s.device.clone()).or_default().add(m);
            }
        }
        out
    }
}

/// One stage running a whole executable (a single-device session): graph inputs in, outputs out.
pub fn single_stage(graph: &Graph, device: &str, exe: Arc<dyn Executable>, predicted_ms: f64) -> pipeline::Stage {
    pipeline::Stage {
        name: format!("{device} (whole model)"),
        device: device.into(),
        work: pipeline::Work::Compute { exe, inputs_from: graph.inputs.iter().map(|i| (i.node, 0)).collect(), outputs_to: graph.outputs.iter().map(|o| (o.node, o.slot)).collect() },
        predicted_ms,
        paced: false,
        cores: vec![],
    }
}

/// A virtual device's partitions compute on the CPU, on the cores given the virtual device.
fn options_for(options: &CompileOptions, device: &str) -> CompileOptions {
    match options.cores.get(device) {
        Some(cores) if executes_on(device) != device => {
            let mut own = options.clone();
            own.cores.insert(executes_on(device).to_string(), cores.clone());
            own
        }
        _ => options.clone(),
    }
}

/// Binds `graph` for `bindings` (and optimises it, as sessions do), checks that `plan` was made
/// for the result, and compiles the plan's partitions.
pub fn compile_plan(graph: &Graph, bindings: &crate::graph::Bindings, plan: &Plan, optimize: bool, options: &CompileOptions) -> Result<PlanExecutable> {
    let mut g = crate::session::bind(graph, bindings)?;
    if optimize {
        crate::passes::optimize(&mut g)?;
    }
    plan.check_graph(&g, bindings)?;
    PlanExecutable::new(Arc::new(g), plan, options)
}
