//! A partition experiment: one model, a sweep of batch sizes and virtual GPUs (fast or slow,
//! on a good or a poor link, with and without a memory cap), every algorithm, and the gap of
//! each to the exact optimum under the same cost model.
//!
//! `cargo run --release --example partition_experiment -- [MODEL_DIR] [--batch 1,8] [--measured-cpu]`
//!
//! The CPU is a virtual 50 GFLOP/s, 20 GB/s host unless `--measured-cpu` (then this machine's
//! cached or freshly measured profile), so the default run is the same on every machine.

use hetsched::backend::Support;
use hetsched::cost::{self, DeviceProfile, ProfileSet, Roofline};
use hetsched::partition::{self, evaluate, optimal, Constraints, Partitioner, Problem};
use std::time::Duration;

fn virtual_host() -> DeviceProfile {
    let mut p = cost::virtual_device::parse_spec("host:gflops=50,gbps=20,launch_us=2,run_us=10").expect("host spec");
    p.device = "cpu".into();
    p.to_device = cost::Link::LOCAL;
    p.to_host = cost::Link::LOCAL;
    p
}

const GPUS: &[(&str, &str)] = &[
    ("fast GPU, PCIe", "vgpu:gflops=20000,gbps=900,link_gbps=25,link_us=10"),
    ("fast GPU, slow link", "vgpu:gflops=20000,gbps=900,link_gbps=0.5,link_us=200"),
    ("weak GPU, slow depthwise", "vgpu:gflops=150,depthwise_gflops=4,gbps=40,launch_us=20,link_gbps=8,link_us=30"),
    ("iGPU, shared memory", "vgpu:gflops=400,gbps=30,launch_us=8,link_gbps=30,link_us=2"),
];

fn main() -> hetsched::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.iter().find(|a| !a.starts_with("--") && !a.chars().next().is_some_and(|c| c.is_ascii_digit())).cloned().unwrap_or_else(|| "tests/data/models/unet_tiny".into());
    let batches: Vec<usize> = match args.iter().position(|a| a == "--batch") {
        Some(i) => args.get(i + 1).map(|s| s.split(',').filter_map(|b| b.parse().ok()).collect()).unwrap_or_default(),
        None => vec![1, 8],
    };
    let host = if args.iter().any(|a| a == "--measured-cpu") {
        let (set, _) = cost::store::resolve(&["cpu".into()], None, &[], true, &mut |_, _, _, _| {})?;
        set.get("cpu").cloned().expect("a cpu profile")
    } else {
        virtual_host()
    };
    let path = std::path::Path::new(&model);
    let g = hetsched::onnx::load_model(if path.is_dir() { path.join("model.onnx") } else { path.to_path_buf() })?;
    println!("{model}");
    println!("{:<26} {:>5} {:<9} {:>11} {:>12} {:>6} {:>5} {:>10}", "devices", "batch", "algorithm", "latency ms", "throughput/s", "parts", "xfers", "gap to opt");
    for &batch in &batches {
        let bindings = hetsched::session::default_bindings(&g, batch, 16, &Default::default());
        let mut bound = hetsched::session::bind(&g, &bindings)?;
        hetsched::passes::optimize(&mut bound)?;
        for (label, spec) in GPUS {
            let gpu = cost::virtual_device::parse_spec(spec)?;
            let model = Roofline::new(ProfileSet { devices: vec![host.clone(), gpu] });
            let devices = vec!["cpu".to_string(), "vgpu".to_string()];
            let p = Problem::new(&bound, &model, &devices, &Constraints::default(), &|_: &str, _| Support::Yes)?;
            let heft = partition::heft::Heft.place(&p)?;
            let exact = optimal::solve(&p, heft.clone(), &optimal::Limits { time: Duration::from_secs(10), expansions: u64::MAX });
            let mut rows: Vec<(String, Vec<usize>)> = vec![];
            for d in 0..devices.len() {
                if let Some(pl) = p.single_device(d) {
                    rows.push((devices[d].clone(), pl));
                }
            }
            rows.push(("greedy".into(), partition::greedy::Greedy.place(&p)?));
            rows.push(("heft".into(), heft));
            rows.push(("optimal".into(), exact.placement.clone()));
            rows.push(("pipeline".into(), partition::pipeline::Pipeline.place(&p)?));
            for (name, pl) in rows {
                let lat = evaluate::latency_ms(&p, &pl);
                let gap = match name.as_str() {
                    "optimal" if !exact.proven => format!("≤{:.2}%", exact.gap() * 100.0),
                    "pipeline" => "-".into(),
                    _ => format!("{:+.2}%", (lat - exact.latency_ms) / exact.latency_ms * 100.0),
                };
                println!(
                    "{label:<26} {batch:>5} {name:<9} {lat:>11.3} {:>12.1} {:>6} {:>5} {gap:>10}",
                    evaluate::throughput_per_s(&p, &pl),
                    evaluate::partitions(&pl).len(),
                    evaluate::transfers(&p, &pl).len()
                );
            }
            let proof = if exact.proven { "proven".to_string() } else { format!("stopped, bound {:.3} ms", exact.lower_bound_ms) };
            println!("{:<26} {:>5} optimal search: {} nodes, {:.1} ms, {proof}", "", "", exact.expansions, exact.elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok(())
}
