//! Pipelined execution: outputs identical to sequential runs on every model and split, paced
//! virtual stages that overlap, failures that fail only their requests, backpressure, the
//! and the async form (the 32-thread stress test is alone in tests/stress.rs).

mod common;
use common::*;
use hetsched::backend::{CompileOptions, Executable};
use hetsched::cost;
use hetsched::exec::pipeline::{Pipeline, WhenFull};
use hetsched::{Error, Session, SessionOptions, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;




#[test]
fn pipelined_outputs_equal_sequential_on_every_model_and_split() {
    for name in MODELS {
        for stride in [1usize, 5] {
            let Some((session, bindings, plan, ins)) = forced_plan(name, "test_data_set_0", &["cpu", "vgpu"], stride) else { continue };
            let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &plan, true, &CompileOptions::default()).unwrap();
            let reference = exe.run(ordered(&session, &ins)).unwrap();
            let stages = exe.stages();
            let pipeline = Pipeline::new(exe.graph().clone(), stages, Some(3), WhenFull::Block, false).unwrap();
            let tickets: Vec<_> = (0..4).map(|_| pipeline.submit(ordered(&session, &ins)).unwrap()).collect();
            for t in tickets {
                let outs = t.wait().unwrap();
                assert_eq!(outs, reference, "{name}, stride {stride} ({} partitions): pipelined differs from sequential", plan.partitions.len());
            }
        }
        // A session's submit (whole model on the CPU) equals its run.
        let Some(dir) = model_dir(name) else { continue };
        let s = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
        let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
        let run = s.run(ins.clone()).unwrap();
        assert_eq!(s.submit(ins).unwrap().wait().unwrap(), run, "{name}: submit differs from run");
    }
}

#[test]
fn pipelined_outputs_equal_sequential_on_cpu_and_wgpu() {
    if hetsched::backend::by_name("wgpu").is_err() {
        assert!(std::env::var_os("CI").is_none() || !cfg!(feature = "wgpu"), "CI must have a wgpu adapter");
        return eprintln!("SKIPPED: no wgpu adapter");
    }
    for name in ["unet_tiny", "bert_tiny"] {
        let Some((session, bindings, plan, ins)) = forced_plan(name, "test_data_set_0", &["cpu", "wgpu"], 3) else { continue };
        let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &plan, true, &CompileOptions::default()).unwrap();
        let reference = exe.run(ordered(&session, &ins)).unwrap();
        let pipeline = Pipeline::new(exe.graph().clone(), exe.stages(), None, WhenFull::Block, false).unwrap();
        let tickets: Vec<_> = (0..3).map(|_| pipeline.submit(ordered(&session, &ins)).unwrap()).collect();
        for t in tickets {
            assert_eq!(t.wait().unwrap(), reference, "{name} on cpu,wgpu ({} partitions)", plan.partitions.len());
        }
    }
}

/// Fails every 10th run.
struct Flaky {
    inner: Arc<dyn Executable>,
    calls: AtomicUsize,
}

impl Executable for Flaky {
    fn run(&self, inputs: Vec<Tensor>) -> hetsched::Result<Vec<Tensor>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) % 10 == 9 {
            return Err(Error::node("injected", "Fault", "every 10th request fails"));
        }
        self.inner.run(inputs)
    }
}

#[test]
fn a_failing_stage_fails_only_its_requests() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let s = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
    let prepared = s.prepare(&s.bindings_for(&ins).unwrap()).unwrap();
    let reference = prepared.executable.run(ordered(&s, &ins)).unwrap();
    let flaky: Arc<dyn Executable> = Arc::new(Flaky { inner: prepared.executable.clone(), calls: AtomicUsize::new(0) });
    let stages = vec![hetsched::exec::single_stage(&prepared.graph, "cpu", flaky, 0.0)];
    let pipeline = Pipeline::new(prepared.graph.clone(), stages, Some(4), WhenFull::Block, false).unwrap();
    let tickets: Vec<_> = (0..100).map(|_| pipeline.submit(ordered(&s, &ins)).unwrap()).collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tickets {
        match t.wait() {
            Ok(outs) => {
                assert_eq!(outs, reference);
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("every 10th"), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (90, 10));
}

/// Runs `inner`, noting the cores the running thread may use.
struct CoresSeen {
    inner: Arc<dyn Executable>,
    seen: std::sync::Mutex<Vec<Vec<usize>>>,
}

impl Executable for CoresSeen {
    fn run(&self, inputs: Vec<Tensor>) -> hetsched::Result<Vec<Tensor>> {
        self.seen.lock().unwrap().push(hetsched::affinity::current()?);
        self.inner.run(inputs)
    }
}

#[cfg(target_os = "linux")]
#[test]
fn stages_run_on_their_cores_and_a_core_not_there_is_refused() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let last = *hetsched::affinity::allowed().unwrap().last().unwrap();
    let options = SessionOptions { threads: Some(1), cores: [("cpu".to_string(), vec![last])].into(), ..Default::default() };
    let s = Session::from_path(dir.join("model.onnx"), options).unwrap();
    let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
    let prepared = s.prepare(&s.bindings_for(&ins).unwrap()).unwrap();
    let reference = prepared.executable.run(ordered(&s, &ins)).unwrap();
    let probe = Arc::new(CoresSeen { inner: prepared.executable.clone(), seen: Default::default() });
    let stage = hetsched::exec::single_stage(&prepared.graph, "cpu", probe.clone(), 0.0).on_cores(&[last]);
    let pipeline = Pipeline::new(prepared.graph.clone(), vec![stage], Some(2), WhenFull::Block, false).unwrap();
    let tickets: Vec<_> = (0..6).map(|_| pipeline.submit(ordered(&s, &ins)).unwrap()).collect();
    for t in tickets {
        assert_eq!(t.wait().unwrap(), reference);
    }
    assert_eq!(*probe.seen.lock().unwrap(), vec![vec![last]; 6]);
    // The session's own pipeline (submit) puts its stage on the CPU's cores too.
    assert_eq!(s.submit(ins.clone()).unwrap().wait().unwrap().len(), reference.len());

    let beyond = last + 1;
    let stage = hetsched::exec::single_stage(&prepared.graph, "cpu", prepared.executable.clone(), 0.0).on_cores(&[beyond]);
    let e = Pipeline::new(prepared.graph.clone(), vec![stage], Some(2), WhenFull::Block, false).err().expect("a core this process lacks is refused").to_string();
    assert!(e.contains(&format!("core {beyond}")) && e.contains("cpu (whole model)"), "{e}");
    let options = SessionOptions { cores: [("cpu".to_string(), vec![beyond])].into(), ..Default::default() };
    let e = Session::from_path(dir.join("model.onnx"), options).err().expect("a session given a core not there is refused").to_string();
    assert!(e.contains(&format!("core {beyond}")) && e.contains("cores for cpu"), "{e}");
}

#[test]
fn a_full_pipeline_answers_busy_when_told_to() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let s = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
    let prepared = s.prepare(&s.bindings_for(&ins).unwrap()).unwrap();
    let mut stage = hetsched::exec::single_stage(&prepared.graph, "cpu", prepared.executable.clone(), 50.0);
    stage.paced = true;
    let pipeline = Pipeline::new(prepared.graph.clone(), vec![stage], Some(1), WhenFull::Busy, false).unwrap();
    let first = pipeline.submit(ordered(&s, &ins)).unwrap();
    let e = pipeline.submit(ordered(&s, &ins)).err().expect("the second request finds the pipeline full");
    assert!(matches!(e, Error::Busy(_)), "{e}");
    first.wait().unwrap();
    pipeline.submit(ordered(&s, &ins)).unwrap().wait().unwrap();
}

/// `Submitted` is a future: polled by a minimal executor (no runtime), it completes.
#[test]
fn submitted_requests_can_be_awaited() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let s = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
    let expected = s.run(ins.clone()).unwrap();
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(s.submit(ins).unwrap());
    let outs = loop {
        match std::future::Future::poll(fut.as_mut(), &mut cx) {
            std::task::Poll::Ready(r) => break r.unwrap(),
            std::task::Poll::Pending => std::thread::park(),
        }
    };
    assert_eq!(outs, expected);
}

/// Static batching: one plan for batch 4; batch 1 and 2 requests are padded to it and their
/// outputs cut back, equal to a dynamic session's; batch 5 is refused; the plan says so.
#[test]
fn a_static_batch_session_pads_smaller_requests() {
    let Some(dir) = model_dir("bert_tiny") else { return };
    let static4 = hetsched::batching::Batching::Static { batch: 4 };
    let fixed = Session::from_path(dir.join("model.onnx"), SessionOptions { batching: static4, ..Default::default() }).unwrap();
    let dynamic = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    for set in ["test_data_set_0", "test_data_set_1"] {
        let (ins, refs) = load_case(&dynamic, &dir.join(set));
        let want = dynamic.run(ins.clone()).unwrap();
        let got = fixed.run(ins.clone()).unwrap();
        assert_eq!(got.len(), want.len());
        for ((n, g), ((_, w), r)) in got.iter().zip(want.iter().zip(&refs)) {
            assert_eq!(g.shape(), w.shape(), "{set} {n}");
            assert_close(&format!("{set} {n} (static batch 4)"), g, r);
        }
        let submitted = fixed.submit(ins).unwrap().wait().unwrap();
        assert_eq!(submitted, got, "{set}: submit and run agree");
    }
    let big = fixed.random_inputs(&hetsched::session::default_bindings(fixed.graph(), 5, 16, &Default::default()), 0).unwrap();
    let e = fixed.run(big).err().expect("batch 5 refused").to_string();
    assert!(e.contains("static batch 4"), "{e}");
    // With devices, the plan says it was made for a static batch.
    let split = Session::from_path(dir.join("model.onnx"), SessionOptions { batching: static4, devices: vec!["cpu".into(), "vgpu".into()], virtual_devices: vec![cost::virtual_device::parse_spec("vgpu").unwrap()], ..Default::default() }).unwrap();
    let (ins, _) = load_case(&split, &dir.join("test_data_set_0"));
    split.run(ins.clone()).unwrap();
    let prepared = split.prepare(&split.bindings_for(&hetsched::batching::pad_inputs(split.graph(), ins, 1, 4).unwrap()).unwrap()).unwrap();
    assert_eq!(prepared.plan.as_ref().unwrap().batching, static4);
}

/// Micro-batching: a batch-5 request split into micro-batches of 2 (2, 2, 1) through a cpu +
/// virtual GPU plan's stages gives the whole request's outputs; with a static batch of 2 the
/// same split lets the session serve requests larger than its batch; async waiting joins too.
#[test]
fn micro_batches_join_into_the_whole_requests_outputs() {
    for name in ["bert_tiny", "unet_tiny"] {
        let Some(dir) = model_dir(name) else { continue };
        let whole = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
        let bindings = hetsched::session::default_bindings(whole.graph(), 5, 16, &Default::default());
        let ins = whole.random_inputs(&bindings, 3).unwrap();
        let want = whole.run(ins.clone()).unwrap();
        let vgpu = cost::virtual_device::parse_spec("vgpu").unwrap();
        let options = [
            SessionOptions { micro_batch: Some(2), ..Default::default() },
            SessionOptions { micro_batch: Some(2), devices: vec!["cpu".into(), "vgpu".into()], virtual_devices: vec![vgpu], ..Default::default() },
            SessionOptions { micro_batch: Some(2), batching: hetsched::batching::Batching::Static { batch: 2 }, ..Default::default() },
        ];
        for (k, o) in options.into_iter().enumerate() {
            let s = Session::from_path(dir.join("model.onnx"), o).unwrap();
            let got = s.run(ins.clone()).unwrap();
            assert_eq!(got.len(), want.len());
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                assert_eq!(g.shape(), w.shape(), "{name} option {k}: {n}");
                let rep = hetsched::compare(g, w, hetsched::Tolerance::ONNX);
                assert!(rep.model_ok(1e-5, 1e-4), "{name} option {k}: {n} rel_l2 {:.3e}", rep.rel_l2);
            }
            let submitted = s.submit(ins.clone()).unwrap().wait().unwrap();
            assert_eq!(submitted, got, "{name} option {k}: submit and run agree");
        }
    }
}
