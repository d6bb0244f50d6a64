//! Initializers stored as ONNX external data: `location` (a file relative to the model's
//! folder), `offset` and `length` in that file. The location may not leave the folder, and the
//! byte count must be what the tensor's dims and dtype need, checked against the file's size
//! before anything is read, so a malformed model cannot make hetsched read or allocate more.

use super::proto::TensorProto;
use crate::error::{Error, Result};
use crate::tensor::{checked_numel, DType};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == 1 || !t.external_data.is_empty()
}

/// The data files opened so far, by path.
#[derive(Default)]
pub struct Files {
    open: HashMap<PathBuf, (File, u64)>,
}

impl Files {
    /// `t` with its external bytes read into `raw_data`.
    pub fn inline(&mut self, t: &TensorProto, folder: &Path) -> Result<TensorProto> {
        let fail = |m: String| Error::InvalidModel(format!("tensor '{}' (external data): {m}", t.name));
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let number = |key: &str| entry(key).map(|v| v.parse::<u64>().map_err(|_| fail(format!("{key} '{v}' is not a byte count")))).transpose();
        let location = entry("location").ok_or_else(|| fail("no location".into()))?;
        let relative = Path::new(location);
        if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(fail(format!("location '{location}' must name a file inside the model's folder")));
        }
        let dtype = DType::from_onnx(t.data_type).ok_or_else(|| Error::Unsupported { node: t.name.clone(), op: "Tensor".into(), what: format!("dtype {}", DType::onnx_name(t.data_type)) })?;
        let dims = t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| fail(format!("negative dim in {:?}", t.dims)))).collect::<Result<Vec<_>>>()?;
        let need = checked_numel(&dims).ok().and_then(|n| n.checked_mul(dtype.size())).ok_or_else(|| fail(format!("dims {dims:?} overflow")))? as u64;
        let offset = number("offset")?.unwrap_or(0);
        if let Some(length) = number("length")? {
            if length != need {
                return Err(fail(format!("length {length} bytes, but dims {dims:?} of {dtype} need {need}")));
            }
        }
        let path = folder.join(relative);
        if !self.open.contains_key(&path) {
            let file = File::open(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
            let size = file.metadata().map_err(|source| Error::Io { path: path.display().to_string(), source })?.len();
            self.open.insert(path.clone(), (file, size));
        }
        let (file, size) = self.open.get_mut(&path).expect("opened above");
        if offset.checked_add(need).is_none_or(|end| end > *size) {
            return Err(fail(format!("bytes {offset}..{} lie past the end of {} ({size} bytes)", offset.saturating_add(need), path.display())));
        }
        let mut raw = vec![0u8; need as usize];
        let io = |source| Error::Io { path: path.display().to_string(), source };
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut raw).map_err(io)?;
        Ok(TensorProto { raw_data: raw, external_data: vec![], data_location: 0, ..t.clone() })
    }
}
