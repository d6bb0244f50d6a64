//! Partitioners over seeded random DAGs (random costs, support, pins and links, through a
//! table-driven cost model) and over a real model with virtual GPUs. Each failure prints its seed.

mod common;
use common::builder::*;
use hetsched::backend::Support;
use hetsched::cost::{self, CostModel, DeviceProfile, ProfileSet, Roofline};
use hetsched::graph::Graph;
use hetsched::partition::{self, evaluate, Constraints, Partitioner, Problem};
use petgraph::stable_graph::NodeIndex;
use hetsched::partition::optimal::Limits;
use std::collections::HashMap;
use std::time::Duration;

use common::Rng;

/// A cost model from tables: the kind of model a learned or measured table would be.
struct Table {
    devices: Vec<String>,
    node: HashMap<(String, String), f64>,
    link_ms_per_mb: f64,
    link_latency_ms: f64,
}

impl CostModel for Table {
    fn devices(&self) -> Vec<String> {
        self.devices.clone()
    }
    fn node_ms(&self, g: &Graph, n: NodeIndex, d: &str) -> hetsched::Result<f64> {
        Ok(self.node.get(&(g.g[n].name.clone(), d.to_string())).copied().unwrap_or(0.0))
    }
    fn transfer_ms(&self, from: &str, to: &str, bytes: u64) -> hetsched::Result<f64> {
        let hops = [from, to].iter().filter(|d| **d != "cpu").count() as f64;
        Ok(if from == to { 0.0 } else { hops * (self.link_latency_ms + bytes as f64 / 1e6 * self.link_ms_per_mb) })
    }
    fn run_overhead_ms(&self, d: &str) -> hetsched::Result<f64> {
        Ok(if d == "cpu" { 0.005 } else { 0.02 })
    }
    fn memory_bytes(&self, g: &Graph, nodes: &[NodeIndex], _: &str) -> hetsched::Result<u64> {
        Ok(cost::memory::footprint(g, nodes, false).total())
    }
    fn capacity_bytes(&self, _: &str) -> Option<u64> {
        None
    }
}

/// A random DAG of Relu/Add nodes over [k] tensors; returns the bound graph.
fn random_dag(rng: &mut Rng, n: usize) -> Graph {
    let mut b = ModelBuilder::new();
    let k = 64 << rng.below(6);
    b.input("x", 1, &[&k.to_string()]);
    let mut names = vec!["x".to_string()];
    for i in 0..n {
        let y = format!("t{i}");
        let a = names[names.len() - 1 - rng.below(names.len().min(4))].clone();
        if rng.below(3) == 0 && names.len() > 1 {
            let c = names[rng.below(names.len())].clone();
            b.node("Add", &[&a, &c], &[&y], vec![]);
        } else {
            b.node("Relu", &[&a], &[&y], vec![]);
        }
        names.push(y);
    }
    b.output(names.last().unwrap());
    if n > 3 {
        b.output(&names[1 + rng.below(n - 1)]);
    }
    let g = hetsched::onnx::load_model_bytes(&b.bytes()).unwrap();
    hetsched::session::bind(&g, &Default::default()).unwrap()
}

#[test]
fn random_dags_respect_constraints_and_heft_never_loses() {
    let (mut checked, mut proven, mut gaps) = (0, 0, (vec![], vec![]));
    for seed in 1..=1000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
        let size = 2 + rng.below(30);
        let g = random_dag(&mut rng, size);
        let nd = 2 + rng.below(3);
        let devices: Vec<String> = std::iter::once("cpu".to_string()).chain((1..nd).map(|i| format!("gpu{i}"))).collect();
        let names: Vec<String> = g.g.node_indices().map(|n| g.g[n].name.clone()).collect();
        let mut table = Table { devices: devices.clone(), node: HashMap::new(), link_ms_per_mb: rng.unit() * 2.0, link_latency_ms: rng.unit() * 0.05 };
        let mut unsupported = std::collections::HashSet::new();
        for name in &names {
            for (di, d) in devices.iter().enumerate() {
                table.node.insert((name.clone(), d.clone()), 0.001 + rng.unit() * if di == 0 { 1.0 } else { 0.4 });
                if di > 0 && rng.below(6) == 0 {
                    unsupported.insert((name.clone(), d.clone()));
                }
            }
        }
        let mut constraints = Constraints::default();
        if rng.below(3) == 0 {
            let pinned = &names[rng.below(names.len())];
            if !pinned.starts_with('x') {
                constraints.add_pin(&format!("{}=cpu", regex::escape(pinned))).unwrap();
            }
        }
        let support = |d: &str, n: NodeIndex| if unsupported.contains(&(g.g[n].name.clone(), d.to_string())) { Support::No("test says no".into()) } else { Support::Yes };
        let p = Problem::new(&g, &table, &devices, &constraints, &support).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let greedy = partition::greedy::Greedy.place(&p).unwrap();
        let heft = partition::heft::Heft.place(&p).unwrap();
        for (name, pl) in [("greedy", &greedy), ("heft", &heft)] {
            p.feasible(pl).unwrap_or_else(|e| panic!("seed {seed} {name}: {e}"));
            // Every tensor read on another device than its producer's is copied there exactly once.
            let copies = evaluate::transfers(&p, pl);
            for (t, tensor) in p.tensors.iter().enumerate() {
                let from = tensor.producer.map(|i| pl[i]).unwrap_or(p.host);
                for &c in &tensor.consumers {
                    let n = copies.iter().filter(|&&(ct, f, d)| ct == t && f == from && d == pl[c]).count();
                    assert_eq!(n, usize::from(pl[c] != from), "seed {seed} {name}: tensor {} to {}", tensor.name, p.devices[pl[c]]);
                }
            }
        }
        // Greedy is the priority order: the first allowed device.
        for (i, &d) in greedy.iter().enumerate() {
            assert_eq!(Some(d), (0..p.devices.len()).find(|&e| p.allowed(i, e)), "seed {seed}");
        }
        let t = |pl: &Vec<usize>| evaluate::latency_ms(&p, pl);
        assert!(t(&heft) <= t(&greedy) + 1e-9, "seed {seed}: heft {} > greedy {}", t(&heft), t(&greedy));
        for d in 0..p.devices.len() {
            if let Some(single) = p.single_device(d) {
                assert!(t(&heft) <= t(&single) + 1e-9, "seed {seed}: heft {} > {} alone {}", t(&heft), p.devices[d], t(&single));
            }
        }
        // The local delta the merge uses equals the whole re-evaluation, for random moves.
        let mut pl = heft.clone();
        for _ in 0..4 {
            let a = rng.below(pl.len());
            let b = a + 1 + rng.below(pl.len() - a);
            let e = rng.below(p.devices.len());
            if !(a..b).all(|i| p.allowed(i, e)) {
                continue;
            }
            let before = t(&pl);
            let delta = evaluate::move_delta_ms(&p, &mut pl, a, b, e);
            pl[a..b].iter_mut().for_each(|x| *x = e);
            assert!((t(&pl) - before - delta).abs() < 1e-9 * (1.0 + before), "seed {seed}: delta {delta} vs {}", t(&pl) - before);
        }
        // The exact search: never worse than HEFT, its cost is the evaluator's, its bound holds.
        let opt = partition::optimal::solve(&p, heft.clone(), &Limits { time: Duration::from_secs(5), expansions: 2_000_000 });
        p.feasible(&opt.placement).unwrap_or_else(|e| panic!("seed {seed} optimal: {e}"));
        assert!(opt.latency_ms <= t(&heft) + 1e-9, "seed {seed}: optimal {} > heft {}", opt.latency_ms, t(&heft));
        assert!((opt.latency_ms - t(&opt.placement)).abs() < 1e-9, "seed {seed}");
        assert!(opt.lower_bound_ms <= opt.latency_ms + 1e-9, "seed {seed}");
        proven += usize::from(opt.proven);
        if opt.proven {
            gaps.0.push((t(&heft) - opt.latency_ms) / opt.latency_ms);
            gaps.1.push((t(&greedy) - opt.latency_ms) / opt.latency_ms);
        }
        // Pipeline stages: feasible, never slower than a device alone at pipelined throughput.
        let pipe = partition::pipeline::Pipeline.place(&p).unwrap();
        p.feasible(&pipe).unwrap_or_else(|e| panic!("seed {seed} pipeline: {e}"));
        let tp = |pl: &Vec<usize>| evaluate::throughput_per_s(&p, pl);
        for d in 0..p.devices.len() {
            if let Some(single) = p.single_device(d) {
                assert!(tp(&pipe) >= tp(&single) * (1.0 - 1e-12), "seed {seed}: pipeline {} < {} alone {}", tp(&pipe), p.devices[d], tp(&single));
            }
        }
        assert!(tp(&pipe) >= tp(&heft) * (1.0 - 1e-12), "seed {seed}: pipeline below the latency plan's throughput");
        let plan = partition::partition(&p, &partition::Auto).unwrap();
        assert_eq!(plan.nodes.len(), p.order.len());
        assert!(plan.nodes.iter().all(|n| !n.reason.is_empty()), "seed {seed}");
        checked += 1;
    }
    assert_eq!(checked, 1000);
    assert!(proven >= 990, "the exact search proved only {proven} of 1000 optima");
    let stats = |v: &[f64]| (v.iter().filter(|&&g| g > 1e-9).count(), v.iter().sum::<f64>() / v.len() as f64 * 100.0, v.iter().cloned().fold(0.0, f64::max) * 100.0);
    let ((hn, hm, hx), (gn, gm, gx)) = (stats(&gaps.0), stats(&gaps.1));
    eprintln!("gap to the proven optimum on {proven} random DAGs: heft above it on {hn}, mean +{hm:.2}%, max +{hx:.1}%; greedy above it on {gn}, mean +{gm:.1}%, max +{gx:.1}%");
}

/// Every placement of a small problem, the fastest by the evaluator.
fn exhaustive(p: &Problem) -> f64 {
    let (n, nd) = (p.order.len(), p.devices.len());
    let mut best = f64::INFINITY;
    let mut pl = vec![0; n];
    'all: loop {
        if (0..n).all(|i| p.allowed(i, pl[i])) && p.feasible(&pl).is_ok() {
            best = best.min(evaluate::latency_ms(p, &pl));
        }
        for i in 0..n {
            pl[i] += 1;
            if pl[i] < nd {
                continue 'all;
            }
            pl[i] = 0;
        }
        break;
    }
    best
}

#[test]
fn optimal_equals_exhaustive_search_on_small_dags() {
    let mut gaps = vec![];
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B54A32D192ED03) | 1);
        let size = 2 + rng.below(7);
        let g = random_dag(&mut rng, size);
        let nd = 2 + rng.below(2);
        let devices: Vec<String> = std::iter::once("cpu".to_string()).chain((1..nd).map(|i| format!("gpu{i}"))).collect();
        let mut table = Table { devices: devices.clone(), node: HashMap::new(), link_ms_per_mb: rng.unit() * 4.0, link_latency_ms: rng.unit() * 0.1 };
        for n in g.g.node_indices() {
            for d in &devices {
                table.node.insert((g.g[n].name.clone(), d.clone()), 0.001 + rng.unit());
            }
        }
        let p = Problem::new(&g, &table, &devices, &Constraints::default(), &|_: &str, _| Support::Yes).unwrap();
        let heft = partition::heft::Heft.place(&p).unwrap();
        let opt = partition::optimal::solve(&p, heft.clone(), &Limits::default());
        assert!(opt.proven, "seed {seed}");
        let best = exhaustive(&p);
        assert!((opt.latency_ms - best).abs() <= 1e-9 * (1.0 + best), "seed {seed}: optimal {} vs exhaustive {best}", opt.latency_ms);
        gaps.push((evaluate::latency_ms(&p, &heft) - best) / best);
    }
    // HEFT is not exact: somewhere it loses to the optimum (else this test proves nothing).
    assert!(gaps.iter().any(|&g| g > 1e-6), "heft was optimal on every small DAG");
}

#[test]
fn a_stopped_search_reports_a_bound_and_a_gap() {
    let mut rng = Rng(77);
    let g = random_dag(&mut rng, 400);
    let devices: Vec<String> = ["cpu", "gpu1", "gpu2", "gpu3"].map(String::from).to_vec();
    let mut table = Table { devices: devices.clone(), node: HashMap::new(), link_ms_per_mb: 1.0, link_latency_ms: 0.01 };
    for n in g.g.node_indices() {
        for d in &devices {
            table.node.insert((g.g[n].name.clone(), d.clone()), 0.001 + rng.unit());
        }
    }
    let p = Problem::new(&g, &table, &devices, &Constraints::default(), &|_: &str, _| Support::Yes).unwrap();
    let heft = partition::heft::Heft.place(&p).unwrap();
    let out = partition::optimal::solve(&p, heft.clone(), &Limits { time: Duration::from_secs(10), expansions: 20_000 });
    assert!(!out.proven && out.expansions == 20_000);
    assert!(out.lower_bound_ms > 0.0 && out.lower_bound_ms <= out.latency_ms && out.latency_ms <= evaluate::latency_ms(&p, &heft) + 1e-9);
    assert!(out.gap() > 0.0 && out.gap() < 1.0, "gap {}", out.gap());
    let plan = partition::partition(&p, &partition::Auto).unwrap();
    let search = plan.search.expect("auto reports its search");
    assert!(search.expansions <= partition::AUTO_EXPANSIONS && search.lower_bound_ms <= plan.predicted.latency_ms + 1e-9);
    assert!(plan.predicted.latency_ms <= evaluate::latency_ms(&p, &heft) + 1e-9);
}

/// A CPU-like profile that needs no measuring: 50 GFLOP/s, 20 GB/s.
fn host() -> DeviceProfile {
    let mut p = cost::virtual_device::parse_spec("host:gflops=50,gbps=20,launch_us=2,run_us=10").unwrap();
    p.device = "cpu".into();
    p.to_device = cost::Link::LOCAL;
    p.to_host = cost::Link::LOCAL;
    p
}

fn squeezenet_problem<'a>(g: &'a Graph, model: &'a Roofline, constraints: &Constraints) -> Problem<'a> {
    let devices = model.devices();
    Problem::new(g, model, &devices, constraints, &|_: &str, _| Support::Yes).unwrap()
}

#[test]
fn a_fast_gpu_takes_the_convolutions_unless_its_link_is_hopeless() {
    let dir = common::model_dir("squeezenet1_1").or_else(|| common::model_dir("unet_tiny")).unwrap();
    let g = hetsched::onnx::load_model(dir.join("model.onnx")).unwrap();
    let b = hetsched::session::default_bindings(&g, 1, 16, &Default::default());
    let mut g = hetsched::session::bind(&g, &b).unwrap();
    hetsched::passes::optimize(&mut g).unwrap();
    let convs = |plan: &hetsched::plan::Plan, d: &str| plan.nodes.iter().filter(|n| n.op_type.starts_with("Conv") && n.device == d).count();

    let fast = Roofline::new(ProfileSet { devices: vec![host(), cost::virtual_device::parse_spec("vgpu:gflops=20000,gbps=900,link_gbps=25,link_us=10").unwrap()] });
    let p = squeezenet_problem(&g, &fast, &Constraints::default());
    let plan = partition::partition(&p, &partition::Auto).unwrap();
    let cpu_alone = evaluate::latency_ms(&p, &p.single_device(0).unwrap());
    assert!(convs(&plan, "vgpu") > convs(&plan, "cpu"), "convolutions move to the fast GPU");
    assert!(plan.predicted.latency_ms < cpu_alone, "{} vs cpu {cpu_alone}", plan.predicted.latency_ms);
    assert!(plan.nodes.iter().any(|n| n.device == "vgpu" && n.reason.contains("cheaper")), "reasons say why");

    let hopeless = Roofline::new(ProfileSet { devices: vec![host(), cost::virtual_device::parse_spec("vgpu:gflops=20000,gbps=900,link_gbps=0.001,link_us=50000").unwrap()] });
    let p = squeezenet_problem(&g, &hopeless, &Constraints::default());
    let plan = partition::partition(&p, &partition::Auto).unwrap();
    assert!(plan.nodes.iter().all(|n| n.device == "cpu"), "a hopeless link keeps everything on the CPU");
    assert!(plan.transfers.is_empty());

    // A memory cap below the weights splits the model, and the plan keeps under it.
    let weights = hetsched::analysis::analyze(&g).unwrap().weight_bytes;
    let mut c = Constraints::default();
    let cap = weights * 3 / 5;
    c.add_mem_limit(&format!("vgpu={cap}")).unwrap();
    let p = squeezenet_problem(&g, &fast, &c);
    let plan = partition::partition(&p, &partition::Auto).unwrap();
    assert!(plan.predicted.memory_bytes["vgpu"] <= cap, "{:?}", plan.predicted.memory_bytes);
    assert!(plan.nodes.iter().any(|n| n.device == "vgpu") && plan.nodes.iter().any(|n| n.device == "cpu"), "split across both");

    // Pins win over cost, and a pin to a device that cannot run the node is an error naming it.
    let mut c = Constraints::default();
    c.add_pin("Conv.*=cpu").unwrap();
    let p = squeezenet_problem(&g, &fast, &c);
    let plan = partition::partition(&p, &partition::Auto).unwrap();
    assert_eq!(convs(&plan, "vgpu"), 0);
    assert!(plan.nodes.iter().filter(|n| n.op_type.starts_with("Conv")).all(|n| n.reason == "pinned"));
    let no_gpu = |d: &str, _| if d == "vgpu" { Support::No("no kernel".into()) } else { Support::Yes };
    let mut c = Constraints::default();
    c.add_pin("Conv.*=vgpu").unwrap();
    let e = Problem::new(&g, &fast, &fast.devices(), &c, &no_gpu).err().expect("pin to a device that cannot run it").to_string();
    assert!(e.contains("pinned to vgpu") && e.contains("no kernel"), "{e}");
}

#[test]
fn plans_round_trip_and_refuse_another_model() {
    let dir = common::model_dir("unet_tiny").unwrap();
    let g = hetsched::onnx::load_model(dir.join("model.onnx")).unwrap();
    let b = hetsched::session::default_bindings(&g, 1, 16, &Default::default());
    let bound = hetsched::session::bind(&g, &b).unwrap();
    let model = Roofline::new(ProfileSet { devices: vec![host(), cost::virtual_device::parse_spec("vgpu").unwrap()] });
    let p = Problem::new(&bound, &model, &model.devices(), &Constraints::default(), &|_: &str, _| Support::Yes).unwrap();
    let mut plan = partition::partition(&p, &partition::Auto).unwrap();
    plan.bindings = b.clone();
    let back = hetsched::plan::Plan::from_json(&plan.to_json()).unwrap();
    assert_eq!(back, plan);
    back.check_graph(&bound, &b).unwrap();
    let b2 = hetsched::session::default_bindings(&g, 2, 16, &Default::default());
    if b2 != b {
        let other = hetsched::session::bind(&g, &b2).unwrap();
        assert!(back.check_graph(&other, &b2).unwrap_err().to_string().contains("dims"));
    }
    assert!(hetsched::plan::Plan::from_json("{\"version\": 1}").is_err());
    let dot = hetsched::plan_draw::to_dot(&plan, &bound);
    assert!(dot.starts_with("digraph") && dot.contains("legend_vgpu"));
    match hetsched::plan_draw::to_svg(&dot) {
        Ok(svg) => assert!(svg.contains("<svg") && svg.contains("vgpu"), "an SVG of the plan"),
        Err(e) if std::env::var_os("CI").is_none() => eprintln!("SKIPPED the SVG picture: {e}"),
        Err(e) => panic!("CI installs graphviz: {e}"),
    }
}
