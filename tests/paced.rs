//! Paced virtual stages overlap: alone in its own test binary, since its figure is a
//! wall-clock time (other tests of a binary run at once and would take its cores).

mod common;
use common::*;
use hetsched::backend::CompileOptions;
use hetsched::exec::pipeline::{Pipeline, Stage, WhenFull, Work};
use std::time::Instant;

/// Two paced virtual stages of 10 and 5 ms with a 2 ms copy between them: 50 requests take
/// about 50 × 10 ms (the slowest stage), not 50 × 17 ms.
#[test]
fn paced_stages_overlap() {
    let Some((session, bindings, mut plan, ins)) = forced_plan("unet_tiny", "test_data_set_0", &["cpu", "v1", "v2"], 1000) else { return };
    // One partition on v1 and one on v2, by name: the first half of the nodes, then the rest.
    let half = plan.nodes.len() / 2;
    for (i, n) in plan.nodes.iter_mut().enumerate() {
        n.device = if i < half { "v1".into() } else { "v2".into() };
    }
    let names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    plan.partitions = vec![
        hetsched::plan::Partition { id: 0, device: "v1".into(), nodes: names[..half].to_vec(), predicted_ms: 10.0 },
        hetsched::plan::Partition { id: 1, device: "v2".into(), nodes: names[half..].to_vec(), predicted_ms: 5.0 },
    ];
    // No copies from the plan (the 2 ms copy stage goes in below), none from or to the host.
    plan.transfers = vec![hetsched::plan::Transfer { tensor: String::new(), from: "v1".into(), to: "v2".into(), bytes: 0, predicted_ms: 0.0 }];
    let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &plan, true, &CompileOptions::default()).unwrap().with_paced(["v1".to_string(), "v2".to_string()]);
    let mut stages = exe.stages();
    assert_eq!(stages.len(), 2, "two partitions, no copies yet");
    stages.insert(1, Stage { name: "copy v1 to v2".into(), device: "v2".into(), work: Work::Copy { bytes: 1 << 20 }, predicted_ms: 2.0, paced: true, cores: vec![] });
    let pipeline = Pipeline::new(exe.graph().clone(), stages, Some(4), WhenFull::Block, true).unwrap();
    let t0 = Instant::now();
    let tickets: Vec<_> = (0..50).map(|_| pipeline.submit(ordered(&session, &ins)).unwrap()).collect();
    for t in tickets {
        t.wait().unwrap();
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    println!("50 requests through 10 ms + 2 ms + 5 ms paced stages: {ms:.1} ms (sequential would be 850 ms); inflight {}", pipeline.inflight);
    assert!(ms <= 1.1 * 50.0 * 10.0, "{ms:.1} ms > 550 ms: the stages do not overlap");
    assert!(ms >= 50.0 * 10.0 * 0.95, "{ms:.1} ms: faster than the slowest stage allows, pacing is off");
    let trace = pipeline.trace().unwrap();
    assert_eq!(trace.spans().len(), 150);
    let json: serde_json::Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    assert!(events.iter().any(|e| e["ph"] == "X" && e["args"]["request"] == 49 && e["cat"] == "copy"));
    assert!(events.iter().any(|e| e["ph"] == "s") && events.iter().any(|e| e["ph"] == "f"), "flow arrows from copies");
    assert!(trace.to_svg("paced").contains("copy v1 to v2"));
}

