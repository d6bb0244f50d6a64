//! A plan as a picture: the graph in Graphviz DOT, nodes filled by device, edges that cross
//! devices drawn bold and labelled with their bytes, and a legend. `to_svg` runs Graphviz's
//! `dot` when it is installed.

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::plan::Plan;
use std::collections::HashMap;
use std::fmt::Write;

const COLOURS: [&str; 6] = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272", "#fdd0a2"];

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn to_dot(plan: &Plan, graph: &Graph) -> String {
    let colour: HashMap<&str, &str> = plan.devices.iter().enumerate().map(|(i, d)| (d.as_str(), COLOURS[i % COLOURS.len()])).collect();
    let device = plan.device_of();
    let mut s = String::from("digraph plan {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  edge [color=\"#888888\"];\n");
    let _ = writeln!(s, "  label=\"{} plan, predicted {:.3} ms alone, {:.0} requests/s pipelined, {} partitions, {} transfers\"; labelloc=t;", plan.algorithm, plan.predicted.latency_ms, plan.predicted.throughput_per_s, plan.partitions.len(), plan.transfers.len());
    let _ = writeln!(s, "  subgraph cluster_legend {{ label=\"devices\"; style=dashed;");
    for d in &plan.devices {
        let _ = writeln!(s, "    \"legend_{d}\" [label=\"{d}\", fillcolor=\"{}\"];", colour[d.as_str()]);
    }
    s.push_str("  }\n");
    let ms: HashMap<&str, f64> = plan.nodes.iter().map(|n| (n.name.as_str(), n.predicted_ms.get(&n.device).copied().unwrap_or(0.0))).collect();
    let mut id: HashMap<petgraph::stable_graph::NodeIndex, String> = HashMap::new();
    for n in graph.g.node_indices() {
        let node = &graph.g[n];
        let name = node.name.as_str();
        let key = format!("n{}", n.index());
        match device.get(name) {
            Some(d) => {
                let _ = writeln!(s, "  {key} [label=\"{}\\n{}\\n{:.3} ms\", fillcolor=\"{}\"];", escape(name), escape(&node.op.name()), ms.get(name).copied().unwrap_or(0.0), colour[d]);
            }
            None if matches!(node.op, Op::Input) => {
                let _ = writeln!(s, "  {key} [label=\"{}\", shape=ellipse, fillcolor=white];", escape(name));
            }
            None => continue, // weights and folded values
        }
        id.insert(n, key);
    }
    for e in graph.g.edge_indices() {
        let (a, b) = graph.g.edge_endpoints(e).unwrap();
        let (Some(ka), Some(kb)) = (id.get(&a), id.get(&b)) else { continue };
        let da = device.get(graph.g[a].name.as_str()).copied().unwrap_or("cpu");
        let db = device.get(graph.g[b].name.as_str()).copied().unwrap_or("cpu");
        if da != db {
            let bytes = graph.g[a].outputs[graph.g[e].out_slot].nbytes();
            let _ = writeln!(s, "  {ka} -> {kb} [color=\"#d62728\", penwidth=2.5, label=\"{da}->{db} {} KB\", fontsize=9];", bytes / 1000);
        } else {
            let _ = writeln!(s, "  {ka} -> {kb};");
        }
    }
    s.push_str("}\n");
    s
}

/// Renders DOT text to SVG with Graphviz's `dot`.
pub fn to_svg(dot: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Plan(format!("drawing SVG needs Graphviz's `dot` (apt-get install graphviz): {e}")))?;
    child.stdin.take().unwrap().write_all(dot.as_bytes()).map_err(|e| Error::Plan(format!("dot: {e}")))?;
    let out = child.wait_with_output().map_err(|e| Error::Plan(format!("dot: {e}")))?;
    if !out.status.success() {
        return Err(Error::Plan(format!("dot failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
