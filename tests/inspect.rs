//! `analysis` figures against the reference table in shared/README.md (params = float
//! initializer elements; MACs of Conv+Gemm+MatMul at batch 1, bert_tiny at seq 16).

mod common;
use common::*;

fn costs(name: &str) -> Option<hetsched::analysis::ModelCost> {
    let g = hetsched::onnx::load_model(model_dir(name)?.join("model.onnx")).unwrap();
    let b = hetsched::session::default_bindings(&g, 1, 16, &Default::default());
    let bound = hetsched::session::bind(&g, &b).unwrap();
    Some(hetsched::analysis::analyze(&bound).unwrap())
}

fn gemm_macs(c: &hetsched::analysis::ModelCost) -> u64 {
    c.nodes.iter().filter(|n| ["Conv", "Gemm", "MatMul"].iter().any(|o| n.op_type.starts_with(o))).map(|n| n.macs).sum()
}

#[test]
fn params_and_macs_match_reference_table() {
    // (model, params, MACs in millions as printed in the table, rounded to 0.1 M)
    let table = [("squeezenet1_1", 1_233_288u64, 349.2), ("mobilenet_v2", 3_475_008, 300.8), ("shufflenet_v2_x1_0", 2_263_878, 144.9), ("bert_tiny", 558_080, 6.4)];
    for (m, params, macs_m) in table {
        let Some(c) = costs(m) else { return };
        assert_eq!(c.params, params, "{m} params");
        let got = gemm_macs(&c) as f64 / 1e6;
        assert!((got - macs_m).abs() < 0.05 + 1e-9, "{m}: MACs {got:.3} M, reference {macs_m} M");
        assert_eq!(c.macs, gemm_macs(&c), "{m}: only Conv/Gemm/MatMul have MACs");
        assert!(c.flops >= 2 * c.macs && c.peak_activation_bytes > 0 && c.weight_bytes >= 4 * c.params);
    }
}

#[test]
fn conv_flops_follow_the_formula() {
    let Some(c) = costs("squeezenet1_1") else { return };
    // squeezenet's first conv: 64 filters 3x3 over 3 channels, stride 2 -> 111x111, with bias.
    let first = c.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
    assert_eq!(first.output_shapes[0], vec![1, 64, 111, 111]);
    let macs = 111 * 111 * 64 * 3 * 3 * 3;
    assert_eq!(first.macs, macs);
    assert_eq!(first.flops, 2 * macs + 111 * 111 * 64);
    assert_eq!(first.params, 64 * 3 * 3 * 3 + 64);
}

#[test]
fn conv_transpose_macs_follow_the_formula() {
    let Some(c) = costs("unet_tiny") else { return };
    // unet_tiny's up1: 16 -> 8 channels, 2x2 kernel, stride 2, over a 16x16 input at batch 1:
    // every input element meets 8 * 2 * 2 weights.
    let up = c.nodes.iter().find(|n| n.op_type == "ConvTranspose").unwrap();
    assert_eq!(up.output_shapes[0], vec![1, 8, 32, 32]);
    let macs = 16 * 16 * 16 * 8 * 2 * 2;
    assert_eq!(up.macs, macs);
    assert_eq!(up.flops, 2 * macs + 8 * 32 * 32);
}

#[test]
fn cli_inspect_json_has_required_fields() {
    let Some(shared) = shared_dir() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hetsched"))
        .args(["inspect", "--json"])
        .arg(shared.join("models/mobilenet_v2/model.onnx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["params", "macs", "flops", "weight_bytes", "peak_activation_bytes", "nodes"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["params"], 3_475_008);
    let n = &v["nodes"][0];
    for k in ["name", "op_type", "output_shapes", "params", "macs", "flops", "bytes_read", "bytes_written"] {
        assert!(n.get(k).is_some(), "node missing {k}");
    }
}

#[test]
fn cli_run_check_passes_and_fails() {
    let Some(shared) = shared_dir() else { return };
    let m = shared.join("models/squeezenet1_1");
    let run = |set: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hetsched"))
            .args(["run", "--check", "--inputs"])
            .arg(m.join(set))
            .arg(&m)
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run("test_data_set_1", &[]);
    assert!(ok.status.success(), "{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("rel_l2"));
    // An impossibly tight bound must make the check fail with exit code 1.
    let bad = run("test_data_set_1", &["--rel-l2", "0", "--max-frac", "0"]);
    assert_eq!(bad.status.code(), Some(1));
}

/// `--dim` with a name the model does not have is an error listing the names it has.
#[test]
fn cli_unknown_dim_name_is_an_error() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/unet_tiny");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hetsched")).args(["inspect", "--dim", "no_such_dim=3"]).arg(&model).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_dim") && err.contains("symbolic dims"), "{err}");
}
