use clap::Args;
use hetsched::conformance::{list_cases, run_case, CaseResult, Status};
use hetsched::{Result, Tolerance};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ConformanceArgs {
    /// A folder of ONNX test cases (each a folder with model.onnx and test_data_set_N/).
    dir: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Only cases whose folder name matches this regex.
    #[arg(long)]
    filter: Option<String>,
    /// One JSON object with every case instead of the table.
    #[arg(long)]
    json: bool,
    /// Print every case that does not pass.
    #[arg(long)]
    verbose: bool,
    /// Feed every model input but the first as a constant, as real models carry weights and
    /// shape parameters (the suite passes them as inputs): exercises the devices' paths for
    /// constant parameters.
    #[arg(long)]
    frozen: bool,
}

pub fn conformance(a: ConformanceArgs) -> Result<ExitCode> {
    let re = a.filter.as_deref().map(regex::Regex::new).transpose().map_err(|e| hetsched::Error::Input(format!("bad --filter: {e}")))?;
    let cases: Vec<PathBuf> = list_cases(&a.dir)
        .map_err(|source| hetsched::Error::Io { path: a.dir.display().to_string(), source })?
        .into_iter()
        .filter(|p| re.as_ref().is_none_or(|re| re.is_match(&p.file_name().unwrap().to_string_lossy())))
        .collect();
    // Panics inside a case are caught and reported; keep the default hook from printing each one.
    std::panic::set_hook(Box::new(|_| {}));
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").unwrap());
    let mut results: Vec<CaseResult> = Vec::with_capacity(cases.len());
    for c in &cases {
        bar.set_message(c.file_name().unwrap().to_string_lossy().into_owned());
        results.push(run_case(c, &a.device, Tolerance::ONNX, a.frozen));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::panic::take_hook();
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    if a.json {
        let v = serde_json::json!({
            "device": a.device, "frozen": a.frozen, "total": results.len(),
            "pass": count(Status::Pass), "fail": count(Status::Fail), "unsupported": count(Status::Unsupported), "error": count(Status::Error),
            "cases": results,
        });
        println!("{}", serde_json::to_string(&v).unwrap());
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_op: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for r in &results {
        by_op.entry(&r.op_type).or_default()[r.status as usize] += 1;
        if a.verbose && r.status != Status::Pass {
            println!("{:<70} {:?}: {}", r.name, r.status, r.detail);
        }
    }
    println!("{:<28} {:>6} {:>6} {:>6} {:>12} {:>6}", "op", "cases", "pass", "fail", "unsupported", "error");
    for (op, c) in &by_op {
        println!("{:<28} {:>6} {:>6} {:>6} {:>12} {:>6}", op, c.iter().sum::<usize>(), c[0], c[1], c[2], c[3]);
    }
    println!(
        "\ndevice {}: {} cases, {} pass, {} fail, {} unsupported, {} error",
        a.device, results.len(), count(Status::Pass), count(Status::Fail), count(Status::Unsupported), count(Status::Error)
    );
    Ok(ExitCode::SUCCESS)
}
