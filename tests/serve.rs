//! The KServe v2 server example (`examples/serve.rs`), started on a loopback port and spoken to
//! over plain HTTP/1.1: health, metadata, concurrent infer requests matching the references,
//! and 4xx answers with a reason for malformed JSON, wrong shapes, dtypes and names, and an
//! unknown model, after which it still serves.

mod common;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_bytes(port, method, path, body.as_bytes(), None)
}

/// A request with a raw body; `header_len` sets Inference-Header-Content-Length (Triton's
/// binary tensor data extension).
fn http_bytes(port: u16, method: &str, path: &str, body: &[u8], header_len: Option<usize>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let extra = header_len.map(|n| format!("Inference-Header-Content-Length: {n}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn start(model: &std::path::Path) -> Option<(Server, u16)> {
    let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/serve");
    if !exe.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI builds the examples: {} missing", exe.display());
        eprintln!("SKIPPED: {} not built (cargo build --release --examples)", exe.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(exe).arg(model).args(["--port", &port.to_string(), "--inflight", "8"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let server = Server(child);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && http(port, "GET", "/v2/health/ready", "").0 == 200 {
            return Some((server, port));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not come up on port {port}");
}

fn tensor_json(name: &str, t: &hetsched::Tensor) -> Value {
    json!({"name": name, "shape": t.shape(), "datatype": "FP32", "data": t.to_f64_vec()})
}

#[test]
fn the_v2_server_answers_health_metadata_and_infer_and_refuses_bad_requests() {
    let Some(dir) = common::model_dir("unet_tiny") else { return };
    let Some((_server, port)) = start(&dir) else { return };
    assert_eq!(http(port, "GET", "/v2/health/live", "").0, 200);
    let (status, meta) = http(port, "GET", "/v2/models/unet_tiny", "");
    assert_eq!(status, 200, "{meta}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let input = meta["inputs"][0].clone();
    assert_eq!(input["datatype"], "FP32");
    assert!(meta["outputs"].as_array().is_some_and(|o| !o.is_empty()));
    assert_eq!(http(port, "GET", "/v2/models/unet_tiny/ready", "").0, 200);
    assert_eq!(http(port, "GET", "/v2/models/other", "").0, 404);

    let session = hetsched::Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let (ins, refs) = common::load_case(&session, &dir.join("test_data_set_0"));
    let names = session.output_names();
    let body = json!({"id": "r1", "inputs": ins.iter().map(|(n, t)| tensor_json(n, t)).collect::<Vec<_>>()}).to_string();
    // Concurrent, bounded: 6 clients, 4 requests each.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (body, refs, names) = (body.clone(), refs.clone(), names.clone());
            std::thread::spawn(move || {
                for _ in 0..4 {
                    let (status, text) = http(port, "POST", "/v2/models/unet_tiny/infer", &body);
                    assert_eq!(status, 200, "{text}");
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["id"], "r1");
                    for (k, r) in refs.iter().enumerate() {
                        let o = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == names[k].as_str()).expect("output by name");
                        let shape: Vec<usize> = o["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                        let data: Vec<f32> = o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                        let got = hetsched::Tensor::from_f32(&shape, data).unwrap();
                        let rep = hetsched::compare(&got, r, hetsched::Tolerance::ONNX);
                        assert!(rep.model_ok(1e-4, 1e-3), "output {k}: rel_l2 {:.3e}", rep.rel_l2);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // The binary tensor data extension (what Triton's clients send by default): the same answer.
    let (first, t) = &ins[0];
    let header = json!({"inputs": [{"name": first, "shape": t.shape(), "datatype": "FP32", "parameters": {"binary_data_size": t.numel() * 4}}]}).to_string();
    let mut raw = header.clone().into_bytes();
    raw.extend(t.to_f64_vec().iter().flat_map(|&v| (v as f32).to_le_bytes()));
    let (status, text) = http_bytes(port, "POST", "/v2/models/unet_tiny/infer", &raw, Some(header.len()));
    assert_eq!(status, 200, "{text}");
    let (_, json_answer) = http(port, "POST", "/v2/models/unet_tiny/infer", &json!({"inputs": [tensor_json(first, t)]}).to_string());
    let outputs = |s: &str| serde_json::from_str::<Value>(s).unwrap()["outputs"].clone();
    assert_eq!(outputs(&text), outputs(&json_answer), "binary and JSON inputs give the same outputs");

    let bad: Vec<(&str, String)> = vec![
        ("malformed JSON", "{\"inputs\": [".into()),
        ("no inputs", "{}".into()),
        ("wrong shape", json!({"inputs": [{"name": first, "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]}]}).to_string()),
        ("data not matching the shape", json!({"inputs": [{"name": first, "shape": t.shape(), "datatype": "FP32", "data": [0.0]}]}).to_string()),
        ("wrong dtype", json!({"inputs": [{"name": first, "shape": t.shape(), "datatype": "INT64", "data": vec![0; t.numel()]}]}).to_string()),
        ("unknown input", json!({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [0.0]}]}).to_string()),
        ("unknown output", json!({"inputs": ins.iter().map(|(n, t)| tensor_json(n, t)).collect::<Vec<_>>(), "outputs": [{"name": "nope"}]}).to_string()),
    ];
    for (what, body) in bad {
        let (status, text) = http(port, "POST", "/v2/models/unet_tiny/infer", &body);
        assert_eq!(status, 400, "{what}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {text}");
    }
    assert_eq!(http(port, "POST", "/v2/models/other/infer", &body).0, 404);
    assert_eq!(http(port, "GET", "/v2/health/live", "").0, 200, "still up");
}
