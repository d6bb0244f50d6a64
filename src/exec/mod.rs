//! Running a plan: each partition compiled by its device's backend from `Graph::subgraph`, run
//! in order, boundary tensors handed from one partition to the next through host memory (each
//! executable uploads what it reads and downloads what it writes; between two GPUs that is two
//! hops). Sequential for now; the pipelined executor overlaps the same steps.

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
}

/// A plan compiled for its devices; runs like any executable (inputs in the graph's order).
pub struct PlanExecutable {
    graph: Arc<Graph>,
    steps: Vec<Step>,
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
            let exe = backend.compile(Arc::new(sub.graph), options)?;
            steps.push(Step { device: part.device.clone(), exe, inputs_from: sub.inputs_from, outputs_to: sub.outputs_to });
        }
        Ok(PlanExecutable { graph, steps })
    }

    /// Runs the plan; with `timed`, also each partition's time.
    pub fn run_steps(&self, inputs: Vec<Tensor>, timed: bool) -> Result<(Vec<Tensor>, Vec<StepTime>)> {
        let g = &self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", g.inputs.len(), inputs.len())));
        }
        let mut values: HashMap<(NodeIndex, usize), Tensor> = HashMap::new();
        for (gi, t) in g.inputs.iter().zip(inputs) {
            values.insert((gi.node, 0), t);
        }
        // Values inference computed (folded) are read where they stand.
        let known = |k: (NodeIndex, usize)| g.g[k.0].outputs.get(k.1).and_then(|v| v.value.as_ref()).map(|t| (**t).clone());
        let mut times = vec![];
        for (i, s) in self.steps.iter().enumerate() {
            let ins = s
                .inputs_from
                .iter()
                .map(|&k| values.get(&k).cloned().or_else(|| known(k)).ok_or_else(|| Error::Plan(format!("partition {i} reads '{}' before any partition wrote it", g.g[k.0].outputs[k.1].name))))
                .collect::<Result<Vec<_>>>()?;
            let t0 = std::time::Instant::now();
            let outs = s.exe.run(ins)?;
            if timed {
                times.push(StepTime { partition: i, device: s.device.clone(), ms: t0.elapsed().as_secs_f64() * 1e3 });
            }
            for (&k, t) in s.outputs_to.iter().zip(outs) {
                values.insert(k, t);
            }
        }
        let outs = g
            .outputs
            .iter()
            .map(|o| {
                let k = (o.node, o.slot);
                values.get(&k).cloned().or_else(|| known(k)).ok_or_else(|| Error::Plan(format!("output '{}' was not produced", o.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outs, times))
    }
}

impl Executable for PlanExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(self.run_steps(inputs, false)?.0)
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
