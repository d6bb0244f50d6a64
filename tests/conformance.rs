//! The ONNX node-conformance suite on every available device, against the checked-in
//! expectation files (`tests/conformance/<device>.txt`, one passing case per line): a listed
//! case that stops passing fails the test; newly passing cases are printed so the list can grow.

mod common;
use hetsched::conformance::{list_cases, run_case, Status};
use hetsched::Tolerance;
use std::collections::BTreeSet;

fn check_device(device: &str) {
    let Some(shared) = common::shared_dir() else { return };
    let suite = shared.join("onnx-node");
    assert!(suite.is_dir(), "{} missing", suite.display());
    let expected_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/conformance/{device}.txt"));
    let expected: BTreeSet<String> = std::fs::read_to_string(&expected_file)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    std::panic::set_hook(Box::new(|_| {}));
    let results: Vec<_> = list_cases(&suite).unwrap().iter().map(|c| run_case(c, device, Tolerance::ONNX)).collect();
    let _ = std::panic::take_hook();
    let passing: BTreeSet<String> = results.iter().filter(|r| r.status == Status::Pass).map(|r| r.name.clone()).collect();
    let panics: Vec<String> = results.iter().filter(|r| r.detail.starts_with("panic")).map(|r| format!("{}: {}", r.name, r.detail)).collect();
    let regressions: Vec<String> = expected
        .difference(&passing)
        .map(|n| {
            let r = results.iter().find(|r| &r.name == n);
            format!("{n}: {}", r.map(|r| format!("{:?} {}", r.status, r.detail)).unwrap_or_else(|| "case folder missing".into()))
        })
        .collect();
    let new: Vec<&String> = passing.difference(&expected).collect();
    if !new.is_empty() {
        println!("{} newly passing on {device} (add them to {}):", new.len(), expected_file.display());
        for n in &new {
            println!("  {n}");
        }
    }
    println!("{device}: {} of {} cases pass ({} expected)", passing.len(), results.len(), expected.len());
    assert!(panics.is_empty(), "cases panicked (bugs):\n{}", panics.join("\n"));
    assert!(regressions.is_empty(), "{} expected cases no longer pass on {device}:\n{}", regressions.len(), regressions.join("\n"));
}

#[test]
fn onnx_node_suite_cpu() {
    check_device("cpu");
}

#[cfg(feature = "wgpu")]
#[test]
fn onnx_node_suite_wgpu() {
    if let Err(e) = hetsched::backend::by_name("wgpu") {
        assert!(std::env::var_os("CI").is_none(), "CI must have a wgpu adapter: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    check_device("wgpu");
}
