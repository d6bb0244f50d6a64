//! Planning speed: HEFT on random DAGs up to 10,000 nodes over 3 devices; `auto`, `optimal` and
//! `pipeline` on the shared models with virtual profiles (no measuring inside the timed loop).
//! `cargo bench --bench partition`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use hetsched::backend::Support;
use hetsched::cost::{self, ProfileSet, Roofline};
use hetsched::onnx::builder::ModelBuilder;
use hetsched::partition::{self, Constraints, Partitioner, Problem};

fn random_chainy_dag(n: usize, seed: u64) -> hetsched::Graph {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["1024"]);
    let mut names = vec!["x".to_string()];
    for i in 0..n {
        let y = format!("t{i}");
        let a = names[names.len() - 1 - (next() as usize % names.len().min(8))].clone();
        if next() % 3 == 0 {
            let c = names[next() as usize % names.len()].clone();
            b.node("Add", &[&a, &c], &[&y], vec![]);
        } else {
            b.node("Relu", &[&a], &[&y], vec![]);
        }
        names.push(y);
    }
    b.output(names.last().unwrap());
    let g = hetsched::onnx::load_model_bytes(&b.bytes()).unwrap();
    hetsched::session::bind(&g, &Default::default()).unwrap()
}

fn devices() -> Roofline {
    let mut cpu = cost::virtual_device::parse_spec("h:gflops=50,gbps=20,launch_us=2").unwrap();
    cpu.device = "cpu".into();
    cpu.to_device = cost::Link::LOCAL;
    cpu.to_host = cost::Link::LOCAL;
    let a = cost::virtual_device::parse_spec("gpu1:gflops=20000,gbps=900,link_gbps=25,link_us=10").unwrap();
    let b = cost::virtual_device::parse_spec("gpu2:gflops=5000,gbps=200,link_gbps=8,link_us=20").unwrap();
    Roofline::new(ProfileSet { devices: vec![cpu, a, b] })
}

fn bench(c: &mut Criterion) {
    let model = devices();
    let names: Vec<String> = vec!["cpu".into(), "gpu1".into(), "gpu2".into()];
    let yes = |_: &str, _| Support::Yes;
    for n in [1_000usize, 10_000] {
        let g = random_chainy_dag(n, 7);
        let p = Problem::new(&g, &model, &names, &Constraints::default(), &yes).unwrap();
        c.bench_function(&format!("heft/random_dag_{n}_nodes_3_devices"), |b| b.iter(|| partition::heft::Heft.place(&p).unwrap()));
    }
    for (m, path) in common::shared_models() {
        let g = hetsched::onnx::load_model(&path).unwrap();
        let bindings = hetsched::session::default_bindings(&g, 1, 16, &Default::default());
        let mut g = hetsched::session::bind(&g, &bindings).unwrap();
        hetsched::passes::optimize(&mut g).unwrap();
        for (name, algorithm) in [("auto", Box::new(partition::Auto) as Box<dyn Partitioner>), ("optimal", partition::by_name("optimal", Default::default()).unwrap()), ("pipeline", Box::new(partition::pipeline::Pipeline))] {
            c.bench_function(&format!("{name}/{m}"), |b| {
                b.iter(|| {
                    let p = Problem::new(&g, &model, &names, &Constraints::default(), &yes).unwrap();
                    partition::partition(&p, &*algorithm).unwrap()
                })
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
