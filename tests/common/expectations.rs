//! Conformance results against the checked-in expectation files
//! (`tests/conformance/<list>.txt`, one passing case per line; `<device>` for the suite as is,
//! `<device>-frozen` with every input but the first fed as a constant): a listed case that stops
//! passing fails the test; newly passing cases are printed so the list can grow.

use hetsched::conformance::{list_cases, run_case, CaseResult, Status};
use std::collections::BTreeSet;

pub fn check(list: &str, results: &[CaseResult]) {
    let expected_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/conformance/{list}.txt"));
    let expected: BTreeSet<String> = std::fs::read_to_string(&expected_file)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
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
        println!("{} newly passing in {list} (add them to {}):", new.len(), expected_file.display());
        for n in &new {
            println!("  {n}");
        }
    }
    println!("{list}: {} of {} cases pass ({} expected)", passing.len(), results.len(), expected.len());
    assert!(panics.is_empty(), "cases panicked (bugs):\n{}", panics.join("\n"));
    assert!(regressions.is_empty(), "{} expected cases no longer pass in {list}:\n{}", regressions.len(), regressions.join("\n"));
}

/// The suite under `suite` on `device`, as is (list `<device>`) and with every input but the
/// first fed as a constant (list `<device>-frozen`).
pub fn check_suite(suite: &std::path::Path, device: &str) {
    assert!(suite.is_dir(), "{} missing", suite.display());
    for (frozen, list) in [(false, device.to_string()), (true, format!("{device}-frozen"))] {
        // Panics inside a case are caught and reported; keep the default hook from printing each.
        std::panic::set_hook(Box::new(|_| {}));
        let results: Vec<_> = list_cases(suite).unwrap().iter().map(|c| run_case(c, device, hetsched::Tolerance::ONNX, frozen)).collect();
        let _ = std::panic::take_hook();
        check(&list, &results);
    }
}
