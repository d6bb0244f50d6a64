//! `hetsched partition`: place a model's nodes on devices by predicted cost, compare the plan
//! with each device alone and with the priority-order baseline, and write it (JSON, DOT, SVG).

use super::cost_args::CostArgs;
use super::{model_path, DimArgs};
use clap::Args;
use hetsched::backend::Support;
use hetsched::partition::{self, evaluate, Constraints, Partitioner, Problem};
use hetsched::plan::Plan;
use hetsched::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PartitionArgs {
    /// model.onnx, or a folder holding one.
    model: PathBuf,
    #[command(flatten)]
    dims: DimArgs,
    #[command(flatten)]
    cost: CostArgs,
    /// greedy (the first device in --devices order that supports a node), heft, optimal (exact,
    /// within --time-limit), pipeline (stages for throughput), or auto (per objective).
    #[arg(long, default_value = "auto")]
    algorithm: String,
    /// latency (one request alone) or throughput (requests pipelined through the devices).
    #[arg(long, default_value = "latency", value_parser = ["latency", "throughput"])]
    objective: String,
    /// Seconds `optimal` may search before it returns its best plan with a bound and the gap.
    #[arg(long, default_value_t = 10.0)]
    time_limit: f64,
    /// REGEX=DEVICE: nodes whose name or op type matches run there (repeatable).
    #[arg(long = "pin")]
    pins: Vec<String>,
    /// DEVICE=SIZE: the most memory the plan may use there, e.g. wgpu=64MiB (repeatable).
    #[arg(long = "mem-limit")]
    mem_limits: Vec<String>,
    /// Leave this device out (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Write the plan as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the plan as Graphviz DOT.
    #[arg(long)]
    dot: Option<PathBuf>,
    /// Draw the plan as SVG (needs Graphviz's `dot`).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print {"plan", "comparison"} as JSON instead of the tables.
    #[arg(long)]
    json: bool,
    /// Run the plan (seeded random inputs, a warm-up and 5 timed runs) and print predicted
    /// against measured time per partition and in total.
    #[arg(long)]
    validate: bool,
    /// CPU threads (a pool of that many; 1: one thread, nothing spinning); default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub cores: super::CoresArg,
}

/// Runs `plan` and prints predicted against measured per partition (a partition's measured time
/// includes uploading what it reads and downloading what it writes) and in total.
fn validate(graph: &hetsched::Graph, bindings: &hetsched::Bindings, plan: &Plan, threads: Option<usize>, cores: hetsched::affinity::CoreMap) -> Result<()> {
    let session = hetsched::Session::from_graph(graph.clone(), Default::default())?;
    let inputs: Vec<hetsched::Tensor> = session.random_inputs(bindings, 0)?.into_iter().map(|(_, t)| t).collect();
    let exe = hetsched::exec::compile_plan(graph, bindings, plan, true, &hetsched::backend::CompileOptions { threads, cores, ..Default::default() })?;
    exe.run_steps(inputs.clone(), false)?;
    let (mut per, mut whole) = (vec![vec![]; plan.partitions.len()], vec![]);
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let (_, steps) = exe.run_steps(inputs.clone(), true)?;
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        for s in steps {
            per[s.partition].push(s.ms);
        }
    }
    let median = super::run::median;
    println!();
    println!("{:<10} {:<6} {:>6} {:>13} {:>12}", "partition", "device", "nodes", "predicted ms", "measured ms");
    for (p, v) in plan.partitions.iter().zip(per.iter_mut()) {
        println!("{:<10} {:<6} {:>6} {:>13.3} {:>12.3}", p.id, p.device, p.nodes.len(), p.predicted_ms, median(v));
    }
    let copies: f64 = plan.transfers.iter().map(|t| t.predicted_ms).sum::<f64>() + 0.0;
    println!("transfers  {:>13} {:>13.3} (predicted; measured inside the partitions that read or write them)", plan.transfers.len(), copies);
    let measured = median(&mut whole);
    println!("{:<10} {:<6} {:>6} {:>13.3} {:>12.3} {:>+7.1}%", "total", "", plan.nodes.len(), plan.predicted.latency_ms, measured, (plan.predicted.latency_ms - measured) / measured * 100.0);
    Ok(())
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

pub fn partition(a: PartitionArgs) -> Result<ExitCode> {
    let g = hetsched::onnx::load_model(model_path(&a.model))?;
    let bindings = a.dims.bindings(&g)?;
    let mut bound = hetsched::session::bind(&g, &bindings)?;
    hetsched::passes::optimize(&mut bound)?;
    let mut constraints = Constraints { exclude: a.exclude.clone(), ..Default::default() };
    for p in &a.pins {
        constraints.add_pin(p)?;
    }
    for m in &a.mem_limits {
        constraints.add_mem_limit(m)?;
    }
    let (model, devices) = a.cost.model()?;
    let mut backends = HashMap::new();
    for d in &devices {
        let runs_on = model.profile(d)?.executes_on.clone().unwrap_or_else(|| d.clone());
        backends.insert(d.clone(), hetsched::backend::by_name(&runs_on)?);
    }
    let support = |d: &str, n| backends[d].supports(&bound, n);
    let problem = Problem::new(&bound, &model, &devices, &constraints, &support as &dyn Fn(&str, _) -> Support)?;
    let objective = if a.objective == "throughput" { hetsched::plan::Objective::Throughput } else { hetsched::plan::Objective::Latency };
    if !(a.time_limit.is_finite() && a.time_limit > 0.0) {
        return Err(Error::Plan(format!("--time-limit {}: expected a positive number of seconds", a.time_limit)));
    }
    let algorithm: Box<dyn Partitioner> = match a.algorithm.as_str() {
        "optimal" => Box::new(partition::optimal::Optimal { limits: partition::optimal::Limits { time: std::time::Duration::from_secs_f64(a.time_limit), expansions: u64::MAX } }),
        name => partition::by_name(name, objective)?,
    };
    let mut plan: Plan = partition::partition(&problem, &*algorithm)?;
    plan.bindings = bindings.clone();

    // The baselines, predicted by the same model.
    let predict = |pl: &Vec<usize>| (evaluate::latency_ms(&problem, pl), evaluate::throughput_per_s(&problem, pl));
    let mut comparison = vec![];
    for (d, name) in problem.devices.iter().enumerate() {
        comparison.push((name.clone(), problem.single_device(d).filter(|pl| problem.feasible(pl).is_ok()).map(|pl| predict(&pl))));
    }
    let greedy = partition::greedy::Greedy.place(&problem).ok().filter(|pl| problem.feasible(pl).is_ok());
    comparison.push(("greedy".into(), greedy.map(|pl| predict(&pl))));
    comparison.push(("chosen".into(), Some((plan.predicted.latency_ms, plan.predicted.throughput_per_s))));

    if let Some(p) = &a.out {
        write(p, &plan.to_json())?;
    }
    let validate_after = a.validate;
    if a.dot.is_some() || a.svg.is_some() {
        let dot = hetsched::plan_draw::to_dot(&plan, &bound);
        if let Some(p) = &a.dot {
            write(p, &dot)?;
        }
        if let Some(p) = &a.svg {
            match hetsched::plan_draw::to_svg(&dot) {
                Ok(svg) => write(p, &svg)?,
                Err(e) => eprintln!("no SVG: {e}"),
            }
        }
    }
    if a.json {
        let rows: Vec<serde_json::Value> = comparison
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "latency_ms": v.map(|v| v.0), "throughput_per_s": v.map(|v| v.1)}))
            .collect();
        println!("{}", serde_json::json!({"plan": plan, "comparison": rows}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<10} {:>12} {:>14}", "plan", "latency ms", "throughput/s");
    for (n, v) in &comparison {
        match v {
            Some((ms, per_s)) => println!("{n:<10} {ms:>12.3} {per_s:>14.1}"),
            None => println!("{n:<10} {:>12} {:>14}", "-", "(cannot run)"),
        }
    }
    println!("(throughput: requests pipelined, the busiest device or copy lane sets the pace)");
    println!();
    println!("{} plan for {:?}: {} partitions, {} transfers ({} bytes)", plan.algorithm, plan.objective, plan.partitions.len(), plan.transfers.len(), plan.transfers.iter().map(|t| t.bytes).sum::<u64>());
    if let Some(s) = &plan.search {
        match s.proven_optimal {
            true => println!("  proven optimal under the cost model ({} search nodes, {:.1} ms)", s.expansions, s.elapsed_ms),
            false => println!("  search stopped after {} nodes, {:.1} ms: lower bound {:.3} ms, gap {:.2}%", s.expansions, s.elapsed_ms, s.lower_bound_ms, s.gap * 100.0),
        }
    }
    for p in &plan.partitions {
        println!("  partition {:>3} on {:<6} {:>4} nodes {:>10.3} ms", p.id, p.device, p.nodes.len(), p.predicted_ms);
    }
    for (d, b) in &plan.predicted.memory_bytes {
        println!("  memory on {d}: {b} bytes");
    }
    let mut by_device: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &plan.nodes {
        *by_device.entry(n.device.as_str()).or_default() += 1;
    }
    println!("  nodes per device: {by_device:?}");
    if validate_after {
        validate(&g, &bindings, &plan, a.threads, a.cores.map()?)?;
    }
    Ok(ExitCode::SUCCESS)
}
