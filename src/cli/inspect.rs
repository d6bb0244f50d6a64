use super::{model_path, DimArgs};
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
    let bindings = a.dims.bindings(&g);
    let mut bound = hetsched::session::bind(&g, &bindings)?;
    if a.optimized {
        hetsched::passes::optimize(&mut bound)?;
    }
    let cost = hetsched::analysis::analyze(&bound)?;
    if a.json {
        let mut v = serde_json::to_value(&cost).unwrap();
        v["bindings"] = serde_json::to_value(&bindings).unwrap();
        println!("{}", serde_json::to_string(&v).unwrap());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<40} {:<18} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}", "node", "op", "output", "params", "MACs", "FLOPs", "read", "written", "AI");
    for n in &cost.nodes {
        let shape = n.output_shapes.first().map(|s| format!("{s:?}")).unwrap_or_default();
        let name: String = n.name.chars().take(40).collect();
        println!(
            "{:<40} {:<18} {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.1}",
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
    Ok(ExitCode::SUCCESS)
}
