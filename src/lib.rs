//! hetsched: load an ONNX model into a petgraph IR, analyse it, split it across CPU, wgpu and
//! CUDA devices by measured cost, and run the pieces as a pipeline.
//!
//! ```no_run
//! use hetsched::{Session, SessionOptions};
//! let session = Session::from_path("model.onnx", SessionOptions::default())?;
//! let bindings = hetsched::session::default_bindings(session.graph(), 1, 16, &Default::default());
//! let outputs = session.run(session.random_inputs(&bindings, 0)?)?;
//! # Ok::<(), hetsched::Error>(())
//! ```

pub mod affinity;
pub mod analysis;
pub mod backend;
pub mod batching;
pub mod budget;
pub mod compare;
pub mod conformance;
pub mod error;
pub mod exec;
pub mod graph;
pub mod hash;
pub mod onnx;
pub mod cost;
pub mod partition;
pub mod passes;
pub mod plan;
pub mod plan_draw;
pub mod session;
pub mod tensor;
/// Seeded values for unit tests, shared by every module's tests.
#[cfg(test)]
pub(crate) mod test_values;

pub use compare::{compare, Report, Tolerance};
pub use error::{Error, Result};
pub use graph::{Bindings, Graph};
pub use session::{Session, SessionOptions};
pub use tensor::{DType, Data, Tensor};
