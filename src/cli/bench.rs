//! `hetsched bench`: every split of a model (a device alone, `auto`'s plan over the devices, a
//! saved plan) measured in the same run with requests pipelined: p50/p99 latency, throughput,
//! peak memory, and throughput as a ratio to the best single device and to replicas (K
//! requests at once on the best single device, what a user would do instead).

use super::cost_args::CostArgs;
use super::{model_path, DimArgs};
use clap::Args;
use hetsched::backend::{CompileOptions, Executable};
use hetsched::exec::pipeline::{Pipeline, WhenFull};
use hetsched::partition::{self, Constraints, Problem};
use hetsched::{Error, Result, Session, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// model.onnx, or a folder holding one.
    model: PathBuf,
    /// Splits to compare: a device name (alone), `auto` (planned over --devices), or a plan file.
    #[arg(long, value_delimiter = ',', default_value = "cpu,auto")]
    splits: Vec<String>,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Value for the other symbolic dims (sequence length and the like).
    #[arg(long, default_value_t = 16)]
    seq: usize,
    /// Bind a named dim explicitly, e.g. --dim seq=32 (repeatable).
    #[arg(long = "dim", value_parser = super::parse_dim)]
    dims: Vec<(String, usize)>,
    #[command(flatten)]
    cost: CostArgs,
    /// Objective of `auto`'s plan: latency or throughput.
    #[arg(long, default_value = "throughput", value_parser = ["latency", "throughput"])]
    objective: String,
    /// Timed requests per split.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Requests in flight; default: from the plan's stage times.
    #[arg(long)]
    inflight: Option<usize>,
    /// Print {"results": [...]} as JSON.
    #[arg(long)]
    json: bool,
    /// --trace/--timeline: each split's (with several splits or batches, the split and batch
    /// go into the file names); --threads.
    #[command(flatten)]
    pub timeline: super::TimelineArgs,
}

struct Measured {
    split: String,
    batch: usize,
    p50: f64,
    p99: f64,
    throughput: f64,
    memory: BTreeMap<String, u64>,
    single: bool,
    inflight: usize,
}

/// Whether the stages run on the CPU and on a wgpu adapter that is itself the CPU (lavapipe):
/// they then compete for the same cores unless given their own.
fn shares_host_cores(stages: &[hetsched::exec::pipeline::Stage]) -> bool {
    let on = |d: &str| stages.iter().any(|s| s.device == d);
    on("cpu") && on("wgpu") && hetsched::backend::by_name("wgpu").is_ok_and(|b| b.info().details.iter().any(|(k, v)| k == "type" && v == "Cpu"))
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn with_suffix(path: &PathBuf, split: &str, batch: usize, many: bool) -> PathBuf {
    if !many {
        return path.clone();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let clean: String = split.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    path.with_file_name(format!("{stem}-{clean}-b{batch}{ext}"))
}

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    let path = model_path(&a.model);
    let graph = hetsched::onnx::load_model(&path)?;
    if a.requests == 0 {
        return Err(Error::Input("--requests must be at least 1".into()));
    }
    let many = a.splits.len() * a.batch.len() > 1;
    let mut results: Vec<Measured> = vec![];
    let mut replicas: BTreeMap<usize, f64> = BTreeMap::new();
    let mut hinted = false;
    for &batch in &a.batch {
        let dims = DimArgs { batch, seq: a.seq, dims: a.dims.clone() };
        let bindings = dims.bindings(&graph)?;
        let base = Session::from_graph(graph.clone(), Default::default())?;
        let inputs: Vec<Tensor> = base.random_inputs(&bindings, 0)?.into_iter().map(|(_, t)| t).collect();
        for split in &a.splits {
            super::peak_rss(true);
            let (bound, stages, memory, single, exe) = stages_for(split, &graph, &bindings, &a)?;
            if !hinted && a.timeline.cores.spec.is_none() && shares_host_cores(&stages) {
                hinted = true;
                eprintln!("note: '{split}' runs stages on the CPU and on a software GPU (lavapipe) that share this machine's cores; --cores cpu=0,wgpu=1 gives each its own (README: Benchmarks of splits)");
            }
            let pipeline = Pipeline::new(bound, stages, a.inflight, WhenFull::Block, true)?;
            for _ in 0..2 {
                pipeline.submit(inputs.clone())?.wait()?;
            }
            let trace = pipeline.trace().expect("bench pipelines trace");
            trace.clear();
            let t0 = Instant::now();
            let (tx, rx) = crossbeam_channel::unbounded();
            let waiter = std::thread::spawn(move || rx.into_iter().map(|t: hetsched::exec::pipeline::Ticket| t.wait().map(|_| ())).collect::<Result<Vec<()>>>());
            for _ in 0..a.requests {
                tx.send(pipeline.submit(inputs.clone())?).map_err(|_| Error::Plan("the bench's waiter stopped".into()))?;
            }
            drop(tx);
            waiter.join().map_err(|_| Error::Plan("the bench's waiter panicked".into()))??;
            let wall = t0.elapsed().as_secs_f64();
            let mut lat: Vec<f64> = trace.latencies_ms().into_iter().map(|(_, ms)| ms).collect();
            let mut memory = memory;
            memory.insert("cpu (measured peak RSS)".into(), super::peak_rss(false));
            for (device, m) in exe.memory() {
                memory.insert(format!("{device} (measured)"), m.total());
            }
            if let Some(p) = &a.timeline.trace {
                let p = with_suffix(p, split, batch, many);
                std::fs::write(&p, trace.to_chrome_json()).map_err(|source| Error::Io { path: p.display().to_string(), source })?;
            }
            if let Some(p) = &a.timeline.timeline {
                let p = with_suffix(p, split, batch, many);
                let title = format!("{} · {split} · batch {batch} · {} requests, {} in flight", path.display(), a.requests, pipeline.inflight);
                std::fs::write(&p, trace.to_svg(&title)).map_err(|source| Error::Io { path: p.display().to_string(), source })?;
            }
            results.push(Measured { split: split.clone(), batch, p50: percentile(&mut lat, 0.5), p99: percentile(&mut lat, 0.99), throughput: a.requests as f64 / wall, memory, single, inflight: pipeline.inflight });
        }
        // Replicas: `inflight` threads each running the best single device's session.
        let best = results.iter().filter(|r| r.batch == batch && r.single).max_by(|x, y| x.throughput.total_cmp(&y.throughput)).map(|r| r.split.clone()).unwrap_or_else(|| "cpu".into());
        let k = a.inflight.unwrap_or(2).max(1);
        let session = Arc::new(Session::from_graph(graph.clone(), hetsched::SessionOptions { device: best, threads: a.timeline.threads, ..Default::default() })?);
        let named: Vec<(String, Tensor)> = session.inputs().iter().map(|i| i.name.clone()).zip(inputs.iter().cloned()).collect();
        session.run(named.clone())?;
        let t0 = Instant::now();
        let per = a.requests.div_ceil(k);
        let threads: Vec<_> = (0..k)
            .map(|_| {
                let (s, named) = (session.clone(), named.clone());
                std::thread::spawn(move || (0..per).try_for_each(|_| s.run(named.clone()).map(|_| ())))
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| Error::Plan("a replica thread panicked".into()))??;
        }
        replicas.insert(batch, (per * k) as f64 / t0.elapsed().as_secs_f64());
    }
    let best_single = |batch: usize| results.iter().filter(|r| r.batch == batch && r.single).map(|r| r.throughput).fold(0.0, f64::max);
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let best = best_single(r.batch);
            serde_json::json!({
                "split": r.split, "batch": r.batch, "p50_ms": r.p50, "p99_ms": r.p99, "throughput_per_s": r.throughput,
                "peak_memory_bytes": r.memory, "inflight": r.inflight,
                "ratio_to_best_single": if best > 0.0 { Some(r.throughput / best) } else { None },
                "ratio_to_replicas": r.throughput / replicas[&r.batch],
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::json!({"results": rows, "replicas_throughput_per_s": replicas}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<22} {:>5} {:>9} {:>9} {:>12} {:>9} {:>11} {:>8}", "split", "batch", "p50 ms", "p99 ms", "requests/s", "inflight", "vs single", "vs repl");
    for (r, j) in results.iter().zip(&rows) {
        let vs = j["ratio_to_best_single"].as_f64().map(|v| format!("{v:.2}×")).unwrap_or_else(|| "-".into());
        println!("{:<22} {:>5} {:>9.3} {:>9.3} {:>12.1} {:>9} {:>11} {:>7.2}×", r.split, r.batch, r.p50, r.p99, r.throughput, r.inflight, vs, j["ratio_to_replicas"].as_f64().unwrap_or(0.0));
    }
    for (b, t) in &replicas {
        println!("replicas (batch {b}, {} threads on the best single device): {t:.1} requests/s", a.inflight.unwrap_or(2).max(1));
    }
    Ok(ExitCode::SUCCESS)
}

type Stages = (Arc<hetsched::Graph>, Vec<hetsched::exec::pipeline::Stage>, BTreeMap<String, u64>, bool, Arc<dyn Executable>);

/// A split's stages: a device alone (one stage), `auto`'s plan, or a saved plan.
fn stages_for(split: &str, graph: &hetsched::Graph, bindings: &hetsched::Bindings, a: &BenchArgs) -> Result<Stages> {
    let plan = if split == "auto" {
        let mut bound = hetsched::session::bind(graph, bindings)?;
        hetsched::passes::optimize(&mut bound)?;
        let (model, devices) = a.cost.model()?;
        let mut backends = std::collections::HashMap::new();
        for d in &devices {
            backends.insert(d.clone(), hetsched::backend::by_name(hetsched::exec::executes_on(d))?);
        }
        let support = |d: &str, n| backends[d].supports(&bound, n);
        let problem = Problem::new(&bound, &model, &devices, &Constraints::default(), &support)?;
        let objective = if a.objective == "latency" { hetsched::plan::Objective::Latency } else { hetsched::plan::Objective::Throughput };
        let mut plan = partition::partition(&problem, &*partition::by_name("auto", objective)?)?;
        plan.bindings = bindings.clone();
        Some(plan)
    } else if split.ends_with(".json") {
        let text = std::fs::read_to_string(split).map_err(|source| Error::Io { path: split.into(), source })?;
        Some(hetsched::plan::Plan::from_json(&text)?)
    } else {
        None
    };
    match plan {
        Some(plan) => {
            let virtuals = a.cost.virtual_profiles()?;
            let paced = virtuals.iter().filter(|v| v.paced).map(|v| v.device.clone());
            let exe = hetsched::exec::compile_plan(graph, bindings, &plan, true, &CompileOptions { threads: a.timeline.threads, cores: a.timeline.cores.map()?, ..Default::default() })?.with_paced(paced);
            let memory = plan.predicted.memory_bytes.iter().map(|(d, b)| (format!("{d} (predicted)"), *b)).collect();
            let stages = exe.stages();
            Ok((exe.graph().clone(), stages, memory, false, Arc::new(exe)))
        }
        None => {
            let session = Session::from_graph(graph.clone(), hetsched::SessionOptions { device: split.into(), threads: a.timeline.threads, cores: a.timeline.cores.map()?, ..Default::default() })?;
            let prepared = session.prepare(bindings)?;
            let exe: Arc<dyn Executable> = prepared.executable.clone();
            let cost = hetsched::analysis::analyze(&prepared.graph)?;
            let memory = BTreeMap::from([(format!("{split} (predicted)"), cost.weight_bytes + cost.peak_activation_bytes)]);
            Ok((prepared.graph.clone(), vec![hetsched::exec::single_stage(&prepared.graph, split, exe.clone(), 0.0).on_cores(a.timeline.cores.map()?.get(split).map(Vec::as_slice).unwrap_or(&[]))], memory, true, exe))
        }
    }
}
