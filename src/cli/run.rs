use super::{model_path, DimArgs};
use clap::Args;
use hetsched::{compare, Result, Session, SessionOptions, Tolerance};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct RunArgs {
    /// model.onnx, or a folder holding one.
    model: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A test-data folder with input_K.pb (and output_K.pb for --check).
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Compare with output_K.pb; exit 1 on a mismatch.
    #[arg(long)]
    check: bool,
    /// Largest accepted relative L2 error per output.
    #[arg(long, default_value_t = 1e-4)]
    rel_l2: f64,
    /// Largest accepted max |out - ref| as a fraction of max |ref|.
    #[arg(long, default_value_t = 1e-3)]
    max_frac: f64,
    #[command(flatten)]
    dims: DimArgs,
    /// Seed for random inputs (when --inputs is not given).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run this many times and report the median latency.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Skip the graph passes.
    #[arg(long)]
    no_optimize: bool,
    /// Store float tensors as f16 on the device (wgpu with shader-f16).
    #[arg(long)]
    f16: bool,
    /// Let CUDA GEMMs use TF32 tensor cores (faster, ~1e-3 relative error).
    #[arg(long)]
    tf32: bool,
    /// Run a plan from `hetsched partition --out` across its devices instead of one device.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Split the model across these devices (comma-separated, cpu among them) by predicted
    /// cost, then run it (profiles from the cache, measured when absent).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// The most memory the model may plan to hold (weights and peak activations), e.g. 2GiB;
    /// default 80% of the memory available.
    #[arg(long)]
    mem_budget: Option<String>,
    /// A virtual device --devices may name, NAME:key=value,... (see `hetsched partition --help`);
    /// paced=1 holds its steps to their predicted times. Repeatable.
    #[arg(long = "virtual")]
    virtuals: Vec<String>,
    #[command(flatten)]
    pub timeline: super::TimelineArgs,
    /// Split a larger batch into micro-batches of this many rows, pipelined through the plan's
    /// stages one after another, outputs joined.
    #[arg(long)]
    micro_batch: Option<usize>,
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let mem_budget = match &a.mem_budget {
        Some(s) => Some(hetsched::cost::virtual_device::parse_bytes(s).map_err(|e| hetsched::Error::Input(format!("--mem-budget: {e}")))?),
        None => None,
    };
    let virtual_devices = a.virtuals.iter().map(|v| hetsched::cost::virtual_device::parse_spec(v)).collect::<Result<Vec<_>>>()?;
    // A traced run goes through the pipelined path one request at a time, so its timeline shows
    // each partition and copy (runs do not overlap: the times are those of `run`).
    let tracing = a.timeline.trace.is_some() || a.timeline.timeline.is_some();
    let opts = SessionOptions { device: a.device.clone(), optimize: !a.no_optimize, f16: a.f16, tf32: a.tf32, devices: a.devices.clone(), mem_budget, virtual_devices, inflight: tracing.then_some(1), trace: tracing, threads: a.timeline.threads, cores: a.timeline.cores.map()?, micro_batch: a.micro_batch, ..Default::default() };
    let session = Session::from_path(model_path(&a.model), opts)?;
    let (inputs, refs) = match &a.inputs {
        Some(dir) => {
            let ins = hetsched::onnx::read_tensor_set(dir, "input")?;
            if ins.is_empty() {
                return Err(hetsched::Error::Input(format!("no input_0.pb in {}", dir.display())));
            }
            // Test folders' tensors may be unnamed: fall back to the model's input order.
            let named = ins
                .into_iter()
                .zip(session.inputs())
                .map(|((n, t), gi)| (if n.is_empty() || !session.inputs().iter().any(|i| i.name == n) { gi.name.clone() } else { n }, t))
                .collect();
            (named, hetsched::onnx::read_tensor_set(dir, "output")?)
        }
        None => {
            let b = a.dims.bindings(session.graph())?;
            if !b.is_empty() {
                // Random inputs take their shapes from these; a model with symbolic image sizes
                // may need other values than the defaults (see --dim).
                let bound: Vec<String> = b.iter().map(|(k, v)| format!("{k}={v}")).collect();
                eprintln!("random inputs with symbolic dims {} (set them with --batch, --seq or --dim NAME=N)", bound.join(", "));
            }
            (session.random_inputs(&b, a.seed)?, vec![])
        }
    };
    if a.check && refs.is_empty() {
        return Err(hetsched::Error::Input("--check needs --inputs DIR with output_K.pb files".into()));
    }
    let t0 = Instant::now();
    let planned = match &a.plan {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| hetsched::Error::Io { path: path.display().to_string(), source })?;
            let plan = hetsched::plan::Plan::from_json(&text)?;
            let bindings = session.bindings_for(&inputs)?;
            let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &plan, !a.no_optimize, &hetsched::backend::CompileOptions { f16: a.f16, tf32: a.tf32, threads: a.timeline.threads, cores: a.timeline.cores.map()?, ..Default::default() })?;
            let traced = if tracing { Some(hetsched::exec::pipeline::Pipeline::new(exe.graph().clone(), exe.stages(), Some(1), hetsched::exec::pipeline::WhenFull::Block, true)?) } else { None };
            Some((plan, exe, traced))
        }
    };
    let run_once = |inputs: Vec<(String, hetsched::Tensor)>| -> Result<(Vec<(String, hetsched::Tensor)>, hetsched::backend::RunStats)> {
        match &planned {
            None if tracing => Ok((session.submit(inputs)?.wait()?, Default::default())),
            None => session.run_measured(inputs),
            Some((_, exe, traced)) => {
                let mut by_name: std::collections::HashMap<String, hetsched::Tensor> = inputs.into_iter().collect();
                let ordered = session.inputs().iter().map(|gi| by_name.remove(&gi.name).ok_or_else(|| hetsched::Error::Input(format!("missing input '{}'", gi.name)))).collect::<Result<Vec<_>>>()?;
                let outs = match traced {
                    Some(p) => p.submit(ordered)?.wait()?,
                    None => hetsched::backend::Executable::run(exe, ordered)?,
                };
                Ok((session.output_names().into_iter().zip(outs).collect(), Default::default()))
            }
        }
    };
    let mut outs = run_once(inputs.clone())?.0;
    let first = t0.elapsed();
    let (mut times, mut device_times) = (vec![], vec![]);
    for _ in 1..a.repeat {
        // The run consumes its inputs; the copy for the next one is not part of it.
        let copy = inputs.clone();
        let t = Instant::now();
        let (o, stats) = run_once(copy)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        device_times.extend(stats.device_ms);
        outs = o;
    }
    let trace = match &planned {
        Some((_, _, Some(p))) => p.trace_handle(),
        _ if tracing => session.trace(&session.bindings_for(&inputs)?),
        _ => None,
    };
    if let Some(trace) = trace {
        if let Some(p) = &a.timeline.trace {
            std::fs::write(p, trace.to_chrome_json()).map_err(|source| hetsched::Error::Io { path: p.display().to_string(), source })?;
            eprintln!("trace of {} runs written to {} (open it in https://ui.perfetto.dev)", a.repeat, p.display());
        }
        if let Some(p) = &a.timeline.timeline {
            let title = format!("{} · {} runs", a.model.display(), a.repeat);
            std::fs::write(p, trace.to_svg(&title)).map_err(|source| hetsched::Error::Io { path: p.display().to_string(), source })?;
            eprintln!("timeline written to {}", p.display());
        }
    }
    let device = match &planned {
        Some((plan, _, _)) => format!("plan ({} partitions on {})", plan.partitions.len(), plan.devices.join(",")),
        None if !a.devices.is_empty() => format!("{} (partitioned)", a.devices.join(",")),
        None => a.device.clone(),
    };
    println!("device {device}  first run {:.3} ms (includes planning)", first.as_secs_f64() * 1e3);
    if !times.is_empty() {
        print!("median of {} runs: {:.3} ms host to host", times.len(), median(&mut times));
        if device_times.len() == times.len() {
            // The kernels alone, inputs already on the device: what a peer timing
            // device-resident tensors (PyTorch's model(x), graph.replay()) reports.
            print!(", {:.3} ms on the device", median(&mut device_times));
        }
        println!();
    }
    if let Some(peak) = Some(super::peak_rss(false)).filter(|&b| b > 0) {
        // The process's high-water mark (VmHWM): weights, planning, every run's intermediates.
        println!("peak resident memory {:.1} MiB", peak as f64 / (1u64 << 20) as f64);
    }
    let memory = match &planned {
        Some((_, exe, _)) => hetsched::backend::Executable::memory(exe),
        None => session.prepare(&session.bindings_for(&inputs)?)?.executable.memory(),
    };
    for (device, m) in &memory {
        println!("{}", super::memory_line(device, m));
    }
    let mut ok = true;
    for (i, (name, t)) in outs.iter().enumerate() {
        let head: Vec<String> = t.to_f64_vec().iter().take(4).map(|v| format!("{v:.5}")).collect();
        print!("{name}: {} {:?} [{}{}]", t.dtype(), t.shape(), head.join(", "), if t.numel() > 4 { ", ..." } else { "" });
        if a.check {
            let Some((_, r)) = refs.get(i) else {
                println!("  no reference");
                ok = false;
                continue;
            };
            let rep = compare(t, r, Tolerance::ONNX);
            let pass = if r.dtype().is_float() { rep.model_ok(a.rel_l2, a.max_frac) } else { rep.elementwise_ok() };
            ok &= pass;
            print!("  rel_l2 {:.3e}  max_abs {:.3e} (max |ref| {:.3e})  {}", rep.rel_l2, rep.max_abs, rep.max_ref, if pass { "OK" } else { "MISMATCH" });
        }
        println!();
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
