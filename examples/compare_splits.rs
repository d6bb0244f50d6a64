//! The library form of `hetsched bench`: one model, the CPU alone against a plan that splits
//! it with a paced virtual GPU (which computes with the CPU's kernels but takes the time its
//! profile predicts), requests pipelined, in the same run.
//!
//! `cargo run --release --example compare_splits -- [MODEL_DIR] [--requests N]`

use hetsched::backend::{CompileOptions, Support};
use hetsched::cost::{self, CostModel, ProfileSet, Roofline};
use hetsched::exec::pipeline::{Pipeline, Stage, WhenFull};
use hetsched::partition::{self, Constraints, Problem};
use hetsched::{Session, Tensor};
use std::sync::Arc;
use std::time::Instant;

/// Requests per second through `stages`, and the median latency in ms.
fn measure(graph: Arc<hetsched::Graph>, stages: Vec<Stage>, inputs: &[Tensor], requests: usize) -> hetsched::Result<(f64, f64)> {
    let pipeline = Pipeline::new(graph, stages, None, WhenFull::Block, true)?;
    pipeline.submit(inputs.to_vec())?.wait()?;
    let t0 = Instant::now();
    let tickets: Vec<_> = (0..requests).map(|_| pipeline.submit(inputs.to_vec())).collect::<hetsched::Result<_>>()?;
    for t in tickets {
        t.wait()?;
    }
    let per_s = requests as f64 / t0.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = pipeline.trace().map(|t| t.latencies_ms().into_iter().map(|(_, ms)| ms).collect()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    Ok((per_s, lat.get(lat.len() / 2).copied().unwrap_or(0.0)))
}

fn main() -> hetsched::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "tests/data/models/unet_tiny".into());
    let requests: usize = args.iter().position(|a| a == "--requests").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(40);
    let session = Session::from_path(std::path::Path::new(&model).join("model.onnx"), Default::default())?;
    let bindings = hetsched::session::default_bindings(session.graph(), 1, 16, &Default::default());
    let inputs: Vec<Tensor> = session.random_inputs(&bindings, 0)?.into_iter().map(|(_, t)| t).collect();

    let prepared = session.prepare(&bindings)?;
    let cpu = vec![hetsched::exec::single_stage(&prepared.graph, "cpu", prepared.executable.clone(), 0.0)];
    let (cpu_rate, cpu_p50) = measure(prepared.graph.clone(), cpu, &inputs, requests)?;

    // This machine's CPU profile (cached, or measured now) and a paced virtual iGPU.
    let (mut profiles, _) = cost::store::resolve(&["cpu".into()], None, &[], true, &mut |_, _, _, _| {})?;
    let gpu = cost::virtual_device::parse_spec("vgpu:gflops=400,gbps=30,launch_us=8,link_gbps=30,link_us=2,paced=1")?;
    profiles.insert(gpu);
    let model_cost = Roofline::new(ProfileSet { devices: profiles.devices });
    let mut bound = hetsched::session::bind(session.graph(), &bindings)?;
    hetsched::passes::optimize(&mut bound)?;
    let problem = Problem::new(&bound, &model_cost, &model_cost.devices(), &Constraints::default(), &|_: &str, _| Support::Yes)?;
    let mut plan = partition::partition(&problem, &partition::pipeline::Pipeline)?;
    plan.bindings = bindings.clone();
    let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &plan, true, &CompileOptions::default())?.with_paced(["vgpu".to_string()]);
    let (split_rate, split_p50) = measure(exe.graph().clone(), exe.stages(), &inputs, requests)?;

    println!("{model}, batch 1, {requests} requests pipelined");
    println!("{:<34} {:>12} {:>10}", "split", "requests/s", "p50 ms");
    println!("{:<34} {cpu_rate:>12.1} {cpu_p50:>10.3}", "cpu alone");
    println!("{:<34} {split_rate:>12.1} {split_p50:>10.3}", format!("cpu + paced vgpu ({} partitions)", plan.partitions.len()));
    println!("predicted for the split: {:.1} requests/s; measured / cpu alone: {:.2}×", plan.predicted.throughput_per_s, split_rate / cpu_rate);
    Ok(())
}
