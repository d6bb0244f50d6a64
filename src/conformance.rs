//! ONNX node-conformance runner: one case folder (`model.onnx` + `test_data_set_N/`) at a time,
//! classified as pass / fail / unsupported / error. A panic inside a case is caught and counted
//! as an error (and is a bug to fix).

use crate::compare::{compare, Tolerance};
use crate::error::Error;
use crate::onnx::proto::ModelProto;
use crate::session::{Session, SessionOptions};
use crate::tensor::Tensor;
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unsupported,
    Error,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// The operator the case exercises (for the per-op summary).
    #[serde(skip, default)]
    pub op_type: String,
}

/// Case folders under `dir` (those holding a model.onnx), sorted by name.
pub fn list_cases(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("model.onnx").is_file()).collect();
    v.sort();
    Ok(v)
}

/// The op a case is about: the node whose type appears in the case name, else the last node.
fn case_op(name: &str, model: &ModelProto) -> String {
    let key = name.trim_start_matches("test_").replace('_', "").to_lowercase();
    let nodes = model.graph.as_ref().map(|g| g.node.as_slice()).unwrap_or(&[]);
    nodes
        .iter()
        .filter(|n| key.starts_with(&n.op_type.to_lowercase()))
        .max_by_key(|n| n.op_type.len())
        .or(nodes.last())
        .map(|n| n.op_type.clone())
        .unwrap_or_else(|| "?".into())
}

/// Runs one case folder. `frozen`: every model input but the first is fed as a constant (the
/// way real models carry weights and shape parameters), which exercises the constant-parameter
/// paths of the GPU lowerings.
pub fn run_case(dir: &Path, device: &str, tol: Tolerance, frozen: bool) -> CaseResult {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bytes = match std::fs::read(dir.join("model.onnx")) {
        Ok(b) => b,
        Err(e) => return CaseResult { name, status: Status::Error, detail: format!("read model: {e}"), op_type: "?".into() },
    };
    let proto = ModelProto::decode(bytes.as_slice()).ok();
    let op_type = proto.as_ref().map(|m| case_op(&name, m)).unwrap_or_else(|| "?".into());
    let opset = proto.as_ref().and_then(|m| m.opset_import.iter().filter(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).max()).unwrap_or(0);
    let result = catch_unwind(AssertUnwindSafe(|| run_case_inner(&bytes, dir, device, tol, frozen)));
    let (status, detail) = match result {
        Ok(Ok(())) => (Status::Pass, String::new()),
        Ok(Err(CaseError::Mismatch(d))) => (Status::Fail, d),
        Ok(Err(CaseError::Run(Error::Unsupported { node, op, what }))) => {
            let what = if what.starts_with("operator ") { format!("op {op}") } else { what };
            let what = what.trim_end_matches(&format!(" on device {device}")).to_string();
            (Status::Unsupported, format!("unsupported: {what} (node '{node}', op {op}, opset {opset}) on device {device}"))
        }
        Ok(Err(CaseError::Run(e))) => (Status::Error, e.to_string()),
        Err(panic) => (Status::Error, format!("panic: {}", crate::error::panic_message(&*panic))),
    };
    CaseResult { name, status, detail, op_type }
}

enum CaseError {
    Run(Error),
    Mismatch(String),
}

impl From<Error> for CaseError {
    fn from(e: Error) -> Self {
        CaseError::Run(e)
    }
}

fn run_case_inner(bytes: &[u8], dir: &Path, device: &str, tol: Tolerance, frozen: bool) -> Result<(), CaseError> {
    let options = SessionOptions { device: device.into(), ..Default::default() };
    let session = Session::from_bytes(bytes, options.clone())?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io { path: dir.display().to_string(), source: e })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
        .collect();
    sets.sort();
    if sets.is_empty() {
        // Nothing to compare against is not a pass.
        return Err(CaseError::Run(Error::InvalidModel(format!("no test_data_set_* folder in {}: nothing to check", dir.display()))));
    }
    for set in sets {
        let ins = crate::onnx::read_tensor_set(&set, "input")?;
        let refs = crate::onnx::read_tensor_set(&set, "output")?;
        let named: Vec<(String, Tensor)> = session.inputs().iter().zip(ins).map(|(gi, (_, t))| (gi.name.clone(), t)).collect();
        let outs = if frozen && named.len() > 1 {
            // Every input but the first becomes a constant of the model, as weights and shape
            // parameters are in real models.
            let mut graph = session.graph().clone();
            for (name, t) in &named[1..] {
                graph.freeze_input(name, t.clone())?;
            }
            Session::from_graph(graph, options.clone())?.run(named[..1].to_vec())?
        } else {
            session.run(named)?
        };
        if outs.len() != refs.len() {
            return Err(CaseError::Mismatch(format!("{} outputs, reference has {}", outs.len(), refs.len())));
        }
        for ((oname, o), (_, r)) in outs.iter().zip(&refs) {
            let rep = compare(o, r, tol);
            if !rep.elementwise_ok() {
                let what = if !rep.dtype_ok {
                    format!("dtype {} vs reference {}", o.dtype(), r.dtype())
                } else if !rep.shape_ok {
                    format!("shape {:?} vs reference {:?}", o.shape(), r.shape())
                } else {
                    format!("{} of {} elements off, max abs error {:.3e} (max |ref| {:.3e})", rep.mismatches, r.numel(), rep.max_abs, rep.max_ref)
                };
                return Err(CaseError::Mismatch(format!("output '{oname}': {what}")));
            }
        }
    }
    Ok(())
}
