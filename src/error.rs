//! The crate's error type. Every fallible path returns [`Error`], carrying enough context
//! (node name, op, shapes) for a user to find the problem in their model.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed ONNX protobuf: {0}")]
    Decode(String),
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("node '{node}' ({op}): unsupported: {what}")]
    Unsupported { node: String, op: String, what: String },
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    #[error("graph has a cycle through node '{0}'")]
    Cycle(String),
    /// A shape that depends on tensor values only known at run time (inference leaves it open).
    #[error("data-dependent: {0}")]
    DataDependent(String),
    #[error("input error: {0}")]
    Input(String),
    #[error("tensor error: {0}")]
    Tensor(String),
    /// A plan that cannot be made (constraints no placement meets) or used (another model).
    #[error("plan: {0}")]
    Plan(String),
    /// A malformed, stale or foreign device profile, or a bad virtual-device spec.
    #[error("profile: {0}")]
    Profile(String),
    #[error("device '{device}' unavailable: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    /// A panic caught inside hetsched: always a bug (please report it with the model).
    #[error("node '{node}' ({op}): internal error, this is a bug in hetsched (please report it with the model): {message}")]
    Internal { node: String, op: String, message: String },
    /// The pipeline is full and the session was told not to wait.
    #[error("busy: {0}")]
    Busy(String),
    /// The request would need more memory than the budget allows.
    #[error("out of memory budget: {0}")]
    Memory(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f` with its panics turned into [`Error::Internal`] for `node` (`op`): an entry point
/// (a session run, a compile, a conformance case) never unwinds into its caller.
pub fn contain<T>(node: &str, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(Error::Internal { node: node.to_string(), op: op.to_string(), message: panic_message(&*payload) }),
    }
}

impl Error {
    pub fn node(node: &str, op: &str, msg: impl Into<String>) -> Self {
        Error::Node { node: node.to_string(), op: op.to_string(), msg: msg.into() }
    }
    /// Wraps an error raised deep inside a kernel with the node it came from, unless it already names one.
    pub fn in_node(self, node: &str, op: &str) -> Self {
        match self {
            Error::Tensor(msg) | Error::Input(msg) | Error::InvalidModel(msg) => Error::node(node, op, msg),
            Error::Unsupported { node: n, op: o, what } if n.is_empty() => Error::Unsupported {
                node: node.to_string(),
                op: if o.is_empty() { op.to_string() } else { o },
                what,
            },
            other => other,
        }
    }
}

/// Shorthand for an `Unsupported` error raised inside a kernel (the node is filled in on the way out).
#[macro_export]
macro_rules! unsupported {
    ($($arg:tt)*) => { return Err($crate::error::Error::Unsupported { node: String::new(), op: String::new(), what: format!($($arg)*) }) };
}

/// Shorthand for `Err(Error::Tensor(format!(..)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::Tensor(format!($($arg)*))) };
}
