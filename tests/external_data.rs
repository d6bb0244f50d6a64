//! Models whose initializers live in external data files: the same results as with the tensors
//! inline, and clear errors for locations outside the model's folder, wrong lengths, data past
//! the end of the file and a missing file.

mod common;
use hetsched::onnx::proto::{ModelProto, StringStringEntryProto, TensorProto};
use hetsched::{Session, SessionOptions};
use prost::Message;
use std::path::{Path, PathBuf};

/// A fresh folder under the target directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("external_data").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto { key: key.into(), value }
}

/// `model` with every initializer's bytes moved to `weights.bin` (aligned at 64, after `lead`
/// bytes of padding), saved as DIR/model.onnx; `edit` may then spoil one tensor's entries.
fn externalise(model: &ModelProto, dir: &Path, edit: impl Fn(&mut TensorProto)) -> PathBuf {
    let mut model = model.clone();
    let mut blob = vec![7u8; 13];
    for t in &mut model.graph.as_mut().unwrap().initializer {
        if t.raw_data.is_empty() {
            continue; // typed-field tensors stay inline, as onnx.save leaves small ones
        }
        blob.resize(blob.len().div_ceil(64) * 64, 0);
        let (offset, length) = (blob.len(), t.raw_data.len());
        blob.append(&mut t.raw_data);
        t.data_location = 1;
        t.external_data = vec![entry("location", "weights.bin".into()), entry("offset", offset.to_string()), entry("length", length.to_string())];
        edit(t);
    }
    std::fs::write(dir.join("weights.bin"), blob).unwrap();
    let path = dir.join("model.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn video3d() -> Option<(PathBuf, ModelProto)> {
    let dir = common::model_dir("video3d")?;
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    Some((dir, ModelProto::decode(bytes.as_slice()).unwrap()))
}

#[test]
fn external_weights_give_the_inline_results() {
    let Some((dir, model)) = video3d() else { return };
    let path = externalise(&model, &scratch("same"), |_| {});
    let moved = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    assert!(moved.graph.unwrap().initializer.iter().filter(|t| t.data_location == 1).count() >= 8, "the weights should be external");
    let session = Session::from_path(&path, SessionOptions::default()).unwrap();
    let (ins, refs) = common::load_case(&session, &dir.join("test_data_set_1"));
    for ((name, out), reference) in session.run(ins).unwrap().iter().zip(&refs) {
        common::assert_close(name, out, reference);
    }
    // From bytes there is no folder to read the data from: an error saying so.
    let err = Session::from_bytes(&std::fs::read(&path).unwrap(), SessionOptions::default()).err().expect("no folder");
    assert!(err.to_string().contains("external data"), "{err}");
}

#[test]
fn bad_external_entries_are_clear_errors() {
    let Some((_, model)) = video3d() else { return };
    let set = |key: &'static str, value: &'static str| {
        move |t: &mut TensorProto| {
            if t.name == "block.w" {
                t.external_data.iter_mut().find(|e| e.key == key).unwrap().value = value.into();
            }
        }
    };
    let cases: [(&str, Box<dyn Fn(&mut TensorProto)>, &str); 5] = [
        ("escape", Box::new(set("location", "../weights.bin")), "inside the model's folder"),
        ("absolute", Box::new(set("location", "/etc/passwd")), "inside the model's folder"),
        ("length", Box::new(set("length", "12")), "length 12 bytes"),
        ("past_end", Box::new(set("offset", "999999999")), "past the end"),
        ("missing", Box::new(set("location", "nothing.bin")), "nothing.bin"),
    ];
    for (name, edit, want) in cases {
        let path = externalise(&model, &scratch(name), edit);
        let err = Session::from_path(&path, SessionOptions::default()).err().unwrap_or_else(|| panic!("{name}: loaded"));
        let text = err.to_string();
        assert!(text.contains(want) && (text.contains("block.w") || name == "missing"), "{name}: {text}");
    }
}
