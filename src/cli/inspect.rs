use super::cost_args::CostArgs;
use super::{model_path, DimArgs};
use hetsched::cost::CostModel;
use std::collections::BTreeMap;
use clap::Args;
use hetsched::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InspectArgs {
    /// model.onnx, or a folder holding one.
    model: PathBuf,
    #[command(flatten)]
    dims: DimArgs,
    /// Inspect after the graph passes (folding, fusion) instead of the model as written.
    #[arg(long)]
    optimized: bool,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Add each node's predicted time on every device (implies --optimized: the graph as it runs),
    /// and the whole model's on each device alone. Uses the cached profile, or measures one.
    #[arg(long)]
    cost: bool,
    #[command(flatten)]
    devices: CostArgs,
}

/// Per node (by name) and per device: predicted ms, `None` where the device cannot run it;
/// and per device the whole model's predicted ms (`None` when some node is unsupported).
type Predictions = (BTreeMap<String, BTreeMap<String, Option<f64>>>, BTreeMap<String, Option<f64>>);

fn predict(g: &hetsched::Graph, a: &InspectArgs) -> Result<Predictions> {
    let (model, devices) = a.devices.model()?;
    let (mut per_node, mut whole): Predictions = Default::default();
    for d in &devices {
        let runs_on = model.profile(d)?.executes_on.clone().unwrap_or_else(|| d.clone());
        let backend = hetsched::backend::by_name(&runs_on)?;
        let mut all_supported = true;
        for n in g.g.node_indices() {
            let node = &g.g[n];
            if matches!(node.op, hetsched::graph::Op::Input | hetsched::graph::Op::Constant { .. }) {
                continue;
            }
            let ms = match backend.supports(g, n) {
                hetsched::backend::Support::Yes => Some(model.node_ms(g, n, d)?),
                hetsched::backend::Support::No(_) => {
                    all_supported = false;
                    None
                }
            };
            per_node.entry(node.name.clone()).or_default().insert(d.clone(), ms);
        }
        let total = hetsched::cost::roofline::predict_graph(&model, g, d)?.total_ms;
        whole.insert(d.clone(), all_supported.then_some(total));
    }
    Ok((per_node, whole))
}

fn si(x: u64) -> String {
    let x = x as f64;
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}K", x / 1e3),
        x => format!("{x}"),
    }
}

pub fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let g = hetsched::onnx::load_model(model_path(&a.model))?;
    let bindings = a.dims.bindings(&g)?;
    let mut bound = hetsched::session::bind(&g, &bindings)?;
    if a.optimized || a.cost {
        hetsched::passes::optimize(&mut bound)?;
    }
    let cost = hetsched::analysis::analyze(&bound)?;
    let predictions = if a.cost { Some(predict(&bound, &a)?) } else { None };
    if a.json {
        let mut v = serde_json::to_value(&cost).unwrap();
        v["bindings"] = serde_json::to_value(&bindings).unwrap();
        if let Some((per_node, whole)) = &predictions {
            for n in v["nodes"].as_array_mut().unwrap() {
                let name = n["name"].as_str().unwrap_or_default().to_string();
                n["predicted_ms"] = serde_json::to_value(per_node.get(&name)).unwrap();
            }
            v["predicted_ms"] = serde_json::to_value(whole).unwrap();
        }
        println!("{}", serde_json::to_string(&v).unwrap());
        return Ok(ExitCode::SUCCESS);
    }
    let devices: Vec<String> = predictions.as_ref().map(|p| p.1.keys().cloned().collect()).unwrap_or_default();
    let ms_cols: String = devices.iter().map(|d| format!(" {:>10}", format!("{d} ms"))).collect();
    println!("{:<40} {:<18} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}{ms_cols}", "node", "op", "output", "params", "MACs", "FLOPs", "read", "written", "AI");
    let fmt_ms = |v: Option<&Option<f64>>| match v {
        Some(Some(ms)) => format!(" {ms:>10.4}"),
        _ => format!(" {:>10}", "-"),
    };
    for n in &cost.nodes {
        let shape = n.output_shapes.first().map(|s| format!("{s:?}")).unwrap_or_default();
        let name: String = n.name.chars().take(40).collect();
        let ms: String = match &predictions {
            Some((per_node, _)) => devices.iter().map(|d| fmt_ms(per_node.get(&n.name).and_then(|m| m.get(d)))).collect(),
            None => String::new(),
        };
        println!(
            "{:<40} {:<18} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.1}{ms}",
            name, n.op_type, shape, si(n.params), si(n.macs), si(n.flops), si(n.bytes_read), si(n.bytes_written), n.intensity
        );
    }
    println!();
    println!("bindings              {bindings:?}");
    println!("nodes                 {}", cost.nodes.len());
    println!("params                {} ({})", cost.params, si(cost.params));
    println!("MACs                  {} ({})", cost.macs, si(cost.macs));
    println!("FLOPs                 {} ({})", cost.flops, si(cost.flops));
    println!("weight bytes          {} ({}B)", cost.weight_bytes, si(cost.weight_bytes));
    println!("peak activation bytes {} ({}B)", cost.peak_activation_bytes, si(cost.peak_activation_bytes));
    if let Some((_, whole)) = &predictions {
        for (d, ms) in whole {
            match ms {
                Some(ms) => println!("predicted on {d:<8} {ms:.3} ms (the whole model there, inputs and outputs copied)"),
                None => println!("predicted on {d:<8} - (some nodes are unsupported there)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
