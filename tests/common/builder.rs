#![allow(unused_imports)]
//! The library's ONNX model builder, re-exported for the tests.

pub use hetsched::onnx::builder::*;
pub use hetsched::onnx::proto::*;
