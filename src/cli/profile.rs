//! `hetsched profile`: measure device profiles, calibrate them on models, and report how close
//! their predictions come (`--fidelity`).

use super::cost_args::{progress_reporter, CostArgs};
use super::model_path;
use clap::Args;
use hetsched::cost::fidelity::{self, FidelityRow, ModelMeasurement, TransferRow};
use hetsched::cost::{calibrate, profiler, store, ProfileKind, ProfileSet, Roofline};
use hetsched::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
#[command(after_help = concat!("Virtual device keys (--virtual NAME:key=value,...): see `hetsched inspect --help`."))]
pub struct ProfileArgs {
    #[command(flatten)]
    cost: CostArgs,
    /// Also write the profiles (every device) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure again even when a profile for this device and build is cached.
    #[arg(long)]
    force: bool,
    /// Fit per-op-class corrections on these models (model.onnx or its folder), stored in the
    /// profile.
    #[arg(long, num_args = 1..)]
    calibrate: Vec<PathBuf>,
    /// Report predicted against measured time for these models, per node and whole, and the
    /// copies' predictions against a fresh measurement.
    #[arg(long, num_args = 1..)]
    fidelity: Vec<PathBuf>,
    /// Batch sizes for --calibrate and --fidelity.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Print the fidelity report as JSON.
    #[arg(long)]
    json: bool,
}

fn measure_all(models: &[PathBuf], devices: &[String], batches: &[usize], model: &Roofline) -> Result<Vec<ModelMeasurement>> {
    let mut out = vec![];
    for path in models {
        for d in devices {
            let p = model.profile(d)?;
            if p.kind == ProfileKind::Virtual {
                continue;
            }
            for &b in batches {
                eprintln!("measuring {} on {d} at batch {b}", path.display());
                match fidelity::measure_model(&model_path(path), d, b, Duration::from_millis(1500), p.timed_node_overhead_us) {
                    Ok(m) => out.push(m),
                    Err(e @ Error::Unsupported { .. }) => eprintln!("  skipped: {e}"),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

pub fn profile(a: ProfileArgs) -> Result<ExitCode> {
    let devices = a.cost.device_list()?;
    let virtuals = a.cost.virtual_profiles()?;
    let measuring = a.force || (a.calibrate.is_empty() && a.fidelity.is_empty());
    let mut set = ProfileSet::default();
    if measuring {
        let mut report = progress_reporter();
        for d in &devices {
            if let Some(v) = virtuals.iter().find(|v| &v.device == d) {
                set.insert(v.clone());
                continue;
            }
            let backend = hetsched::backend::by_name(d)?;
            let start = std::time::Instant::now();
            let p = profiler::measure(&*backend, profiler::ProfileOptions { quick: a.cost.quick }, &mut |what, i, n| report(d, what, i, n))?;
            let path = store::save_cached(&*backend, &p)?;
            eprintln!("{d}: measured in {:.1} s, saved to {}", start.elapsed().as_secs_f64(), path.display());
            set.insert(p);
        }
    } else {
        set = a.cost.model()?.0.profiles;
    }
    let mut model = Roofline::new(set);
    if !a.calibrate.is_empty() {
        let ms = measure_all(&a.calibrate, &devices, &a.batch, &model)?;
        for p in model.profiles.devices.iter_mut().filter(|p| p.kind == ProfileKind::Measured) {
            calibrate::apply(p, &ms);
            let factors: Vec<String> = p.calibration.iter().map(|(c, f)| format!("{}={f:.2}", c.name())).collect();
            eprintln!("{}: calibration {}", p.device, factors.join(" "));
            let backend = hetsched::backend::by_name(&p.device)?;
            store::save_cached(&*backend, p)?;
        }
    }
    if let Some(out) = &a.out {
        model.profiles.save(out)?;
        eprintln!("wrote {}", out.display());
    }
    if a.fidelity.is_empty() {
        if !a.json {
            print_profiles(&model.profiles);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ms = measure_all(&a.fidelity, &devices, &a.batch, &model)?;
    let mut rows: Vec<FidelityRow> = vec![];
    for m in &ms {
        let calibrated = model.profile(&m.device)?.calibrated_on.contains(&format!("{} (batch {})", m.model, m.batch));
        rows.push(fidelity::fidelity(&model, m, calibrated)?);
    }
    let mut transfers: Vec<TransferRow> = vec![];
    for d in &devices {
        transfers.extend(fidelity::transfer_fidelity(&model, d, a.cost.quick)?);
    }
    if a.json {
        println!("{}", serde_json::json!({ "models": rows, "transfers": transfers }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("| model | device | batch | calibrated on | predicted ms | measured ms | error | nodes | nodes within ±25% | Spearman |");
    println!("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:+.1}% | {} | {:.0}% | {:.3} |",
            r.model, r.device, r.batch, if r.calibrated_on { "yes" } else { "no" }, r.predicted_ms, r.measured_ms, r.error_pct, r.nodes, r.nodes_within_25 * 100.0, r.spearman
        );
    }
    if !transfers.is_empty() {
        println!();
        println!("| device | direction | bytes | predicted ms | measured ms | error |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        for t in &transfers {
            println!("| {} | {} | {} | {:.4} | {:.4} | {:+.1}% |", t.device, t.direction, t.bytes, t.predicted_ms, t.measured_ms, t.error_pct);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_profiles(set: &ProfileSet) {
    for p in &set.devices {
        println!("{} ({:?}): launch {:.1} µs, run overhead {:.1} µs", p.device, p.kind, p.launch_us, p.run_overhead_us);
        for (c, curve) in &p.rates {
            let unit = if c.compute_bound() { ("GFLOP/s", "FLOP") } else { ("GB/s", "B") };
            let pts: Vec<String> = curve.points.iter().map(|(s, r)| format!("{:.0}{}@{:.2e}", r / 1e9, "", s)).collect();
            println!("  {:<12} {} over {}: {}", c.name(), unit.0, unit.1, pts.join(" "));
        }
        if !p.is_host() {
            println!("  to device  {:.1} µs + {:.2} GB/s", p.to_device.latency_us, p.to_device.gbps);
            println!("  to host    {:.1} µs + {:.2} GB/s", p.to_host.latency_us, p.to_host.gbps);
        }
        if !p.calibration.is_empty() {
            let f: Vec<String> = p.calibration.iter().map(|(c, f)| format!("{}={f:.2}", c.name())).collect();
            println!("  calibration {} (on {})", f.join(" "), p.calibrated_on.join(", "));
        }
    }
}
