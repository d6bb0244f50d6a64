//! A short fuzz pass on stable, for CI: the cargo-fuzz harnesses (`fuzz/src/lib.rs`) fed with
//! seeded random bytes and with byte mutations and truncations of every model the project and
//! `../shared` hold. Not coverage-guided (that is `cargo +nightly fuzz run TARGET`, see
//! README), but any panic, contained or not, fails it with the seed that found it.
//! Each part runs a fixed number of seeded inputs, so the pass is the same on every machine;
//! `HETSCHED_FUZZ_SCALE` multiplies the counts (a longer hunt), and no part runs past 90 s.

#[path = "../fuzz/src/lib.rs"]
mod harness;
mod common;

use std::time::{Duration, Instant};

fn scale() -> f64 {
    std::env::var("HETSCHED_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

use common::Rng;

/// Runs `f` on inputs from `make` until the time is up; a panic names the seed.
fn pass(name: &str, count: u64, mut make: impl FnMut(&mut Rng) -> Vec<u8>, f: fn(&[u8])) {
    let (start, mut n) = (Instant::now(), 0u64);
    let count = (count as f64 * scale()) as u64;
    while n < count && start.elapsed() < Duration::from_secs(90 * scale().max(1.0) as u64) {
        let seed = n.wrapping_mul(0x9E3779B97F4A7C15) ^ 0x5DEECE66D | 1;
        let data = make(&mut Rng(seed));
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            let path = std::env::temp_dir().join(format!("hetsched-fuzz-{name}-{seed:x}.bin"));
            std::fs::write(&path, &data).ok();
            panic!("{name}: input {n} (seed {seed:#x}) crashed; saved to {}", path.display());
        }
        n += 1;
    }
    println!("{name}: {n} executions in {:.0} s, no crash", start.elapsed().as_secs_f64());
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = (rng.next() % 256) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Every model file beside the tests and in the shared folder.
fn models() -> Vec<Vec<u8>> {
    let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/models")];
    if let Some(s) = common::shared_dir() {
        dirs.push(s.join("models"));
    }
    let mut out = vec![];
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(b) = std::fs::read(e.path().join("model.onnx")) {
                out.push(b);
            }
        }
    }
    assert!(!out.is_empty(), "no models to mutate");
    out
}

/// A model with a few bytes flipped, inserted or removed, or cut short.
fn mutate(models: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut m = models[(rng.next() % models.len() as u64) as usize].clone();
    match rng.next() % 4 {
        0 => m.truncate((rng.next() % m.len() as u64) as usize),
        _ => {
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() % m.len().max(1) as u64) as usize;
                match rng.next() % 3 {
                    0 if at < m.len() => m[at] = rng.next() as u8,
                    1 => m.insert(at.min(m.len()), rng.next() as u8),
                    _ if at < m.len() => {
                        m.remove(at);
                    }
                    _ => {}
                }
            }
        }
    }
    m
}

#[test]
fn fuzz_pass_load_and_bind_random_and_mutated_models() {
    pass("load random", 2_000_000, random_bytes, harness::load);
    let models = models();
    pass("bind mutated", 3_000, |rng| mutate(&models, rng), harness::bind);
}

#[test]
fn fuzz_pass_run_generated_graphs() {
    pass("run_graph", 300_000, random_bytes, harness::run_graph);
}

/// Every input a fuzzer found a crash with (tests/data/fuzz/TARGET-*.bin) runs clean now.
#[test]
fn fuzz_findings_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        let target: fn(&[u8]) = match name.split('-').next() {
            Some("load") => harness::load,
            Some("bind") => harness::bind,
            Some("run_graph") => harness::run_graph,
            _ => continue,
        };
        target(&data);
        n += 1;
    }
    assert!(n > 0, "no findings in {}", dir.display());
}
