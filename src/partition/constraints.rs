//! What the user imposes on a placement: pins (`REGEX=DEVICE`, matching node names or op
//! types), memory limits per device, excluded devices.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Constraints {
    pub pins: Vec<(regex::Regex, String)>,
    pub mem_limits: BTreeMap<String, u64>,
    pub exclude: Vec<String>,
}

impl Constraints {
    /// Parses `REGEX=DEVICE`. The regex must match a whole node name or op type.
    pub fn add_pin(&mut self, spec: &str) -> Result<()> {
        let (re, dev) = spec.rsplit_once('=').ok_or_else(|| Error::Plan(format!("pin '{spec}': expected REGEX=DEVICE")))?;
        let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| Error::Plan(format!("pin '{spec}': {e}")))?;
        self.pins.push((re, dev.trim().to_string()));
        Ok(())
    }

    /// Parses `DEVICE=SIZE` (`cuda=4GiB`).
    pub fn add_mem_limit(&mut self, spec: &str) -> Result<()> {
        let (dev, size) = spec.split_once('=').ok_or_else(|| Error::Plan(format!("memory limit '{spec}': expected DEVICE=SIZE")))?;
        let bytes = crate::cost::virtual_device::parse_bytes(size).map_err(|e| Error::Plan(format!("memory limit '{spec}': {e}")))?;
        self.mem_limits.insert(dev.trim().to_string(), bytes);
        Ok(())
    }

    /// The device a node is pinned to (the first pin matching its name or op type).
    pub fn pin_for(&self, name: &str, op_type: &str) -> Option<&str> {
        self.pins.iter().find(|(re, _)| re.is_match(name) || re.is_match(op_type)).map(|(_, d)| d.as_str())
    }
}
