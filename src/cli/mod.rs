//! clap commands. Each command uses the library's public API only.

mod bench;
mod conformance;
mod cost_args;
mod inspect;
mod partition;
mod profile;
mod run;

use clap::{Args, Parser, Subcommand};
use hetsched::{Bindings, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hetsched", version, about = "Run ONNX models across heterogeneous devices (CPU, wgpu, CUDA)")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List devices and their properties.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Per-node shapes, params, MACs, FLOPs, bytes and memory of a model.
    Inspect(inspect::InspectArgs),
    /// Measure device profiles (micro-benchmarks, copies), calibrate them on models, and report
    /// their fidelity.
    Profile(profile::ProfileArgs),
    /// Place a model's nodes on devices by predicted cost and compare with each device alone.
    Partition(partition::PartitionArgs),
    /// Run a model on a device, optionally checking against reference outputs.
    Run(run::RunArgs),
    /// Measure splits of a model (devices alone, auto's plan, saved plans) with requests
    /// pipelined: latency percentiles, throughput, memory, against replicas.
    Bench(bench::BenchArgs),
    /// Run a folder of ONNX node test cases and classify each as pass/fail/unsupported/error.
    Conformance(conformance::ConformanceArgs),
}

impl Cli {
    /// The CPU thread count the command asks for (`--threads`), if it takes one.
    pub fn cpu_threads(&self) -> Option<usize> {
        match &self.cmd {
            Command::Run(a) => a.timeline.threads,
            Command::Bench(a) => a.timeline.threads,
            Command::Partition(a) => a.threads,
            _ => None,
        }
    }
}

/// How symbolic dims get bound.
#[derive(Args, Clone, Debug)]
pub struct DimArgs {
    /// Value for batch-like symbolic dims.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Value for the other symbolic dims (sequence length and the like).
    #[arg(long, default_value_t = 16)]
    pub seq: usize,
    /// Bind a named dim explicitly, e.g. --dim seq=32 (repeatable).
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
}

impl DimArgs {
    /// The bindings, after checking that every `--dim NAME` names a symbolic dim of the model's
    /// inputs.
    pub fn bindings(&self, g: &hetsched::Graph) -> Result<Bindings> {
        let names: std::collections::BTreeSet<&str> = g.inputs.iter().flat_map(|i| i.shape.iter()).filter_map(|d| if let hetsched::graph::Dim::Sym(s) = d { Some(s.as_str()) } else { None }).collect();
        for (k, _) in &self.dims {
            if !names.contains(k.as_str()) {
                return Err(hetsched::Error::Input(format!("--dim {k}: the model's inputs have no dim named '{k}' (their symbolic dims: {names:?})")));
            }
        }
        let explicit: Bindings = self.dims.iter().cloned().collect();
        Ok(hetsched::session::default_bindings(g, self.batch, self.seq, &explicit))
    }
}

fn parse_dim(s: &str) -> std::result::Result<(String, usize), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    Ok((k.to_string(), v.parse().map_err(|e| format!("bad value in '{s}': {e}"))?))
}

/// Peak resident memory since the last reset, and a reset (Linux: /proc/self/clear_refs).
pub(crate) fn peak_rss(reset: bool) -> u64 {
    if reset {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())).unwrap_or(0) * 1024
}

/// One device's measured memory, as `run` prints it.
pub(crate) fn memory_line(device: &str, m: &hetsched::backend::MemoryUse) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let workspace = if m.workspace_bytes > 0 { format!(" + workspace {:.1}", mib(m.workspace_bytes)) } else { String::new() };
    let arena = if m.arena_overhead_bytes > 0 { format!(" + arena beyond the live peak {:.1}", mib(m.arena_overhead_bytes)) } else { String::new() };
    format!("memory on {device}: {:.1} MiB = weights {:.1} + activations {:.1}{workspace}{arena} (measured)", mib(m.total()), mib(m.weight_bytes), mib(m.activation_bytes))
}

pub fn model_path(p: &PathBuf) -> PathBuf {
    if p.is_dir() { p.join("model.onnx") } else { p.clone() }
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Command::Devices { json } => {
            let devs = hetsched::backend::all();
            if json {
                println!("{}", serde_json::to_string_pretty(&devs).unwrap());
            } else {
                for d in devs {
                    let details: Vec<String> = d.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("{:6} {:12} {}", d.name, if d.available { "available" } else { "unavailable" }, details.join("  "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect(a) => inspect::inspect(a),
        Command::Run(a) => run::run(a),
        Command::Profile(a) => profile::profile(a),
        Command::Partition(a) => partition::partition(a),
        Command::Bench(a) => bench::bench(a),
        Command::Conformance(a) => conformance::conformance(a),
    }
}

/// Timelines and threads, as `run` and `bench` take them.
#[derive(clap::Args)]
pub struct TimelineArgs {
    /// Write the timeline in the Chrome Trace Event format (Perfetto opens it): a process per
    /// device, each partition step and copy a slice with the request, predicted and measured ms.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Draw the timeline as an SVG Gantt chart (a lane per stage, predicted times dashed).
    #[arg(long)]
    pub timeline: Option<std::path::PathBuf>,
    /// CPU threads (a pool of that many; 1: one thread, nothing spinning); default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub cores: CoresArg,
}

/// Which cores each device's threads run on.
#[derive(clap::Args)]
pub struct CoresArg {
    /// Cores per device, `DEVICE=LIST,...` (`cpu=0,wgpu=1`; `cpu=0-3,wgpu=4`): each pipeline stage,
    /// the CPU's workers and a driver's threads (lavapipe's) stay on their device's cores.
    /// Linux only. Default: anywhere.
    #[arg(long = "cores", value_name = "DEVICE=CORES")]
    pub spec: Option<String>,
}

impl CoresArg {
    pub fn map(&self) -> hetsched::Result<hetsched::affinity::CoreMap> {
        self.spec.as_deref().map(hetsched::affinity::parse_map).transpose().map(Option::unwrap_or_default)
    }
}
