//! 32 threads submitting to one session: alone in its own binary, since it measures the
//! process's resident memory (other tests of a binary would allocate beside it).

mod common;
use common::*;
use hetsched::{Session, SessionOptions, Tensor};
use std::sync::Arc;
use std::time::Instant;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())).unwrap_or(0) * 1024
}

/// 32 threads submit 2,000 requests in all, batch 1 and 2 mixed, to one session: every output
/// matches the sequential answer for its batch, nothing deadlocks, memory stays flat.
#[test]
fn thirty_two_threads_submitting_to_one_session() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let s = Arc::new(Session::from_path(dir.join("model.onnx"), SessionOptions { inflight: Some(8), ..Default::default() }).unwrap());
    let sets: Vec<(Vec<(String, Tensor)>, Vec<(String, Tensor)>)> = ["test_data_set_0", "test_data_set_1"]
        .iter()
        .map(|set| {
            let (ins, _) = load_case(&s, &dir.join(set));
            let out = s.run(ins.clone()).unwrap();
            (ins, out)
        })
        .collect();
    let sets = Arc::new(sets);
    let run = |n: usize| {
        let threads: Vec<_> = (0..32)
            .map(|t| {
                let (s, sets) = (s.clone(), sets.clone());
                std::thread::spawn(move || {
                    for i in 0..n {
                        let (ins, want) = &sets[(t + i) % sets.len()];
                        let got = s.submit(ins.clone()).unwrap().wait().unwrap();
                        assert_eq!(&got, want, "thread {t} request {i}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    run(4); // warm-up: both batch sizes planned and pipelined
    let t0 = Instant::now();
    // The allocator's per-thread arenas settle during the first thousand requests; a leak keeps
    // growing through the second thousand.
    run(1000 / 32);
    let settled = rss_bytes();
    run(1000 / 32);
    let after = rss_bytes();
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("2,000 requests from 32 threads in {:.2} s; RSS {:.1} MiB after the first 1,000, {:.1} MiB after the second", t0.elapsed().as_secs_f64(), mib(settled), mib(after));
    assert!(after <= settled + settled / 4 + (32 << 20), "RSS grew from {settled} to {after} over the second 1,000 requests");
}

