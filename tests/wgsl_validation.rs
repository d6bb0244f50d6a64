//! Every WGSL kernel, in every specialisation the wgpu backend builds, parsed and validated by
//! naga. Needs no adapter, so shader errors show even on machines without a GPU.
#![cfg(feature = "wgpu")]

use hetsched::backend::wgpu::kernels::{all_specialisations, source};

#[test]
fn every_kernel_specialisation_validates() {
    let specs = all_specialisations();
    assert!(specs.len() > 30, "expected the full set of specialisations, got {}", specs.len());
    let mut failures = vec![];
    for (kernel, op) in &specs {
        let src = source(*kernel, op);
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{kernel:?} [{op}]: parse: {}", e.emit_to_string(&src)));
                continue;
            }
        };
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty());
        if let Err(e) = v.validate(&module) {
            failures.push(format!("{kernel:?} [{op}]: validate: {}", e.emit_to_string(&src)));
        }
    }
    assert!(failures.is_empty(), "{} of {} shaders invalid:\n{}", failures.len(), specs.len(), failures.join("\n"));
}

#[test]
fn a_broken_shader_is_caught() {
    // The check itself must be able to fail.
    let src = source(hetsched::backend::wgpu::kernels::Kernel::Unary, "undefined_fn(x)");
    let parsed = naga::front::wgsl::parse_str(&src);
    let invalid = match parsed {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty()).validate(&m).is_err(),
    };
    assert!(invalid);
}
