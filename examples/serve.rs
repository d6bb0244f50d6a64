//! An HTTP inference server speaking the KServe v2 / Open Inference Protocol REST API, so the
//! standard v2 clients (Triton's, KServe's) work against it unchanged. One `Session` serves
//! every request through `submit` (pipelined across `--devices` when given); a full pipeline
//! answers 503 with `Retry-After`; a malformed request 400 with the reason; an unknown model 404.
//!
//! `cargo run --release --example serve -- MODEL [--port 8000] [--devices cpu,wgpu] [--name NAME] [--inflight K] [--threads N] [--cores cpu=0-3,wgpu=4]`
//!
//! ```sh
//! curl -s localhost:8000/v2/models/unet_tiny
//! curl -s -X POST localhost:8000/v2/models/unet_tiny/infer -d '{"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [...]}]}'
//! ```

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hetsched::exec::pipeline::WhenFull;
use hetsched::graph::Dim;
use hetsched::{DType, Data, Error, Session, SessionOptions, Tensor};
use serde_json::{json, Value};
use std::sync::Arc;

struct App {
    name: String,
    session: Session,
    metadata: Value,
}

fn datatype(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F64 => "FP64",
        DType::I64 => "INT64",
        DType::I32 => "INT32",
        DType::I16 => "INT16",
        DType::I8 => "INT8",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::Bool => "BOOL",
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": msg.to_string()}))).into_response()
}

/// The model's inputs and outputs with v2 datatypes, -1 for dims that depend on the batch or
/// other symbolic dims (outputs: dims that differ between batch 1 and 2).
fn metadata(name: &str, session: &Session) -> hetsched::Result<Value> {
    let g = session.graph();
    let inputs: Vec<Value> = g
        .inputs
        .iter()
        .map(|i| json!({"name": i.name, "datatype": datatype(i.dtype), "shape": i.shape.iter().map(|d| match d { Dim::Known(v) => *v as i64, Dim::Sym(_) => -1 }).collect::<Vec<_>>()}))
        .collect();
    let bound = |batch| -> hetsched::Result<hetsched::Graph> { hetsched::session::bind(g, &hetsched::session::default_bindings(g, batch, 16, &Default::default())) };
    let (one, two) = (bound(1)?, bound(2)?);
    let outputs: Vec<Value> = g
        .outputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let v1 = &one.g[one.outputs[k].node].outputs[one.outputs[k].slot];
            let v2 = &two.g[two.outputs[k].node].outputs[two.outputs[k].slot];
            let (s1, s2) = (v1.shape.clone().unwrap_or_default(), v2.shape.clone().unwrap_or_default());
            let shape: Vec<i64> = if s1.len() == s2.len() { s1.iter().zip(&s2).map(|(a, b)| if a == b { *a as i64 } else { -1 }).collect() } else { vec![-1; s1.len()] };
            json!({"name": o.name, "datatype": v1.dtype.map(datatype).unwrap_or("FP32"), "shape": shape})
        })
        .collect();
    Ok(json!({"name": name, "versions": ["1"], "platform": "onnx", "inputs": inputs, "outputs": outputs}))
}

/// Row-major data, flat or nested arrays, as f64 (bools as 0/1).
fn flatten(v: &Value, out: &mut Vec<f64>) -> Result<(), String> {
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| flatten(x, out)),
        Value::Number(n) => n.as_f64().map(|x| out.push(x)).ok_or_else(|| format!("{n} is not a number")),
        Value::Bool(b) => {
            out.push(f64::from(u8::from(*b)));
            Ok(())
        }
        other => Err(format!("{other} is not a number")),
    }
}

/// Little-endian values of `dt` as f64 (the binary tensor data extension).
fn decode_binary(bytes: &[u8], dt: &str) -> Result<Vec<f64>, String> {
    let width = match dt {
        "BOOL" | "UINT8" | "INT8" => 1,
        "INT16" | "UINT16" | "FP16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        other => return Err(format!("binary data of datatype {other}")),
    };
    if bytes.len() % width != 0 {
        return Err(format!("{} bytes of binary data are not a whole number of {dt} values", bytes.len()));
    }
    Ok(bytes
        .chunks(width)
        .map(|c| match dt {
            "BOOL" | "UINT8" => c[0] as f64,
            "INT8" => c[0] as i8 as f64,
            "INT16" => i16::from_le_bytes([c[0], c[1]]) as f64,
            "UINT16" => u16::from_le_bytes([c[0], c[1]]) as f64,
            "FP16" => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
            "INT32" => i32::from_le_bytes(c.try_into().unwrap()) as f64,
            "UINT32" => u32::from_le_bytes(c.try_into().unwrap()) as f64,
            "FP32" => f32::from_le_bytes(c.try_into().unwrap()) as f64,
            "INT64" => i64::from_le_bytes(c.try_into().unwrap()) as f64,
            "UINT64" => u64::from_le_bytes(c.try_into().unwrap()) as f64,
            _ => f64::from_le_bytes(c.try_into().unwrap()),
        })
        .collect())
}

fn tensor_of(input: &Value, want: Option<DType>, binary: &mut &[u8]) -> Result<(String, Tensor), String> {
    let name = input["name"].as_str().ok_or("an input without a \"name\"")?.to_string();
    let shape: Vec<usize> = input["shape"].as_array().ok_or(format!("input '{name}': no \"shape\""))?.iter().map(|d| d.as_u64().map(|d| d as usize).ok_or(format!("input '{name}': shape entry {d} is not a size"))).collect::<Result<_, _>>()?;
    let dt = input["datatype"].as_str().ok_or(format!("input '{name}': no \"datatype\""))?;
    let dtype = [DType::F32, DType::F16, DType::F64, DType::I64, DType::I32, DType::I16, DType::I8, DType::U8, DType::U16, DType::U32, DType::U64, DType::Bool].into_iter().find(|d| datatype(*d) == dt).ok_or(format!("input '{name}': unknown datatype {dt}"))?;
    if let Some(w) = want {
        if w != dtype {
            return Err(format!("input '{name}' is {dt}, the model expects {}", datatype(w)));
        }
    }
    let mut v = vec![];
    match input["parameters"]["binary_data_size"].as_u64() {
        // Triton's binary tensor data extension: the values follow the JSON header.
        Some(k) => {
            let k = k as usize;
            if k > binary.len() {
                return Err(format!("input '{name}': binary_data_size {k} but only {} bytes follow the header", binary.len()));
            }
            let (mine, rest) = binary.split_at(k);
            *binary = rest;
            v = decode_binary(mine, dt).map_err(|e| format!("input '{name}': {e}"))?;
        }
        None => flatten(&input["data"], &mut v).map_err(|e| format!("input '{name}': {e}"))?,
    }
    let n = hetsched::tensor::checked_numel(&shape).map_err(|e| format!("input '{name}': {e}"))?;
    if v.len() != n {
        return Err(format!("input '{name}': shape {shape:?} needs {n} values, data has {}", v.len()));
    }
    let data = match dtype {
        DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => Data::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()),
        DType::F64 => Data::F64(v),
        DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
        DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
        DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DType::U64 => Data::U64(v.iter().map(|&x| x as u64).collect()),
        DType::Bool | DType::BF16 => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
    };
    Ok((name, Tensor::new(shape, data).map_err(|e| e.to_string())?))
}

fn output_json(name: &str, t: &Tensor) -> Value {
    let data: Value = match t.dtype() {
        DType::Bool => json!(t.to_f64_vec().iter().map(|&x| x != 0.0).collect::<Vec<_>>()),
        d if d.is_float() => json!(t.to_f64_vec().iter().map(|&x| if x.is_finite() { json!(x) } else { json!(x.to_string()) }).collect::<Vec<_>>()),
        _ => json!(t.to_i64_vec().unwrap_or_default()),
    };
    json!({"name": name, "datatype": datatype(t.dtype()), "shape": t.shape(), "data": data})
}

async fn infer(State(app): State<Arc<App>>, Path(model): Path<String>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    if model != app.name {
        return error(StatusCode::NOT_FOUND, format!("unknown model '{model}' (this server serves '{}')", app.name));
    }
    // With the binary tensor data extension the JSON header is the body's first N bytes.
    let json_len = match headers.get("inference-header-content-length").map(|h| h.to_str().ok().and_then(|v| v.parse::<usize>().ok())) {
        None => body.len(),
        Some(Some(n)) if n <= body.len() => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad Inference-Header-Content-Length"),
    };
    let (header_bytes, mut binary) = body.split_at(json_len);
    let req: Value = match serde_json::from_slice(header_bytes) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    let Some(inputs) = req["inputs"].as_array() else { return error(StatusCode::BAD_REQUEST, "the request has no \"inputs\" array") };
    let g = app.session.graph();
    let mut tensors = vec![];
    for i in inputs {
        let want = i["name"].as_str().and_then(|n| g.inputs.iter().find(|gi| gi.name == n)).map(|gi| gi.dtype);
        match tensor_of(i, want, &mut binary) {
            Ok(t) => tensors.push(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    let wanted: Option<Vec<String>> = req["outputs"].as_array().map(|o| o.iter().filter_map(|x| x["name"].as_str().map(String::from)).collect());
    if let Some(w) = &wanted {
        let names = app.session.output_names();
        if let Some(bad) = w.iter().find(|n| !names.contains(n)) {
            return error(StatusCode::BAD_REQUEST, format!("unknown output '{bad}' (the model's outputs: {names:?})"));
        }
    }
    let submitted = match app.session.submit(tensors) {
        Ok(s) => s,
        Err(Error::Busy(m)) => return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], Json(json!({"error": format!("busy: {m}")}))).into_response(),
        Err(e @ (Error::Input(_) | Error::Memory(_))) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match submitted.await {
        Ok(outs) => {
            let outputs: Vec<Value> = outs.iter().filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.contains(n))).map(|(n, t)| output_json(n, t)).collect();
            let mut resp = json!({"model_name": app.name, "model_version": "1", "outputs": outputs});
            if let Some(id) = req.get("id") {
                resp["id"] = id.clone();
            }
            Json(resp).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter().position(|a| a == key).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first().filter(|a| !a.starts_with("--")).cloned() else {
        eprintln!("usage: serve MODEL [--port N] [--devices LIST] [--name NAME] [--inflight K] [--threads N] [--cores DEVICE=CORES,...]");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(&model);
    let file = if path.is_dir() { path.join("model.onnx") } else { path.clone() };
    let name = arg(&args, "--name").unwrap_or_else(|| {
        let dir = if path.is_dir() { path.clone() } else { path.parent().map(|p| p.to_path_buf()).unwrap_or_default() };
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    });
    let port: u16 = arg(&args, "--port").map(|p| p.parse()).transpose()?.unwrap_or(8000);
    let devices: Vec<String> = arg(&args, "--devices").map(|d| d.split(',').map(String::from).collect()).unwrap_or_default();
    let inflight: Option<usize> = arg(&args, "--inflight").map(|k| k.parse()).transpose()?;
    let threads: Option<usize> = arg(&args, "--threads").map(|k| k.parse()).transpose()?;
    // Inference on cores of its own, away from the server's network threads if the user wants.
    let cores = arg(&args, "--cores").map(|c| hetsched::affinity::parse_map(&c)).transpose()?.unwrap_or_default();
    let options = SessionOptions { devices, inflight: inflight.or(Some(8)), when_full: WhenFull::Busy, threads, cores, ..Default::default() };
    let session = Session::from_path(&file, options)?;
    let metadata = metadata(&name, &session)?;
    let app = Arc::new(App { name: name.clone(), session, metadata });
    let router = Router::new()
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(|| async { Json(json!({"ready": true})) }))
        .route("/v2/models/{model}", get(|State(app): State<Arc<App>>, Path(m): Path<String>| async move { if m == app.name { Json(app.metadata.clone()).into_response() } else { error(StatusCode::NOT_FOUND, format!("unknown model '{m}'")) } }))
        .route("/v2/models/{model}/ready", get(|State(app): State<Arc<App>>, Path(m): Path<String>| async move { if m == app.name { Json(json!({"name": m, "ready": true})).into_response() } else { error(StatusCode::NOT_FOUND, format!("unknown model '{m}'")) } }))
        .route("/v2/models/{model}/infer", post(infer))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint (see /v2/models/NAME)") })
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("serving '{name}' on http://{} (KServe v2 REST)", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
