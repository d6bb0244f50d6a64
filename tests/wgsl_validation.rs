//! Every WGSL kernel, in every specialisation the wgpu backend builds, parsed and validated by
//! naga. Needs no adapter, so shader errors show even on machines without a GPU.
#![cfg(feature = "wgpu")]

use hetsched::backend::wgpu::kernels::{all_specialisations, source, type_variants};

#[test]
fn every_kernel_specialisation_validates() {
    let specs = all_specialisations();
    assert!(specs.len() > 30, "expected the full set of specialisations, got {}", specs.len());
    let mut failures = vec![];
    let mut checked = 0;
    for (kernel, op) in &specs {
      for types in type_variants(*kernel) {
        checked += 1;
        let src = source(*kernel, op, &types);
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{kernel:?} {types:?} [{op}]: parse: {}", e.emit_to_string(&src)));
                continue;
            }
        };
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::SHADER_FLOAT16);
        if let Err(e) = v.validate(&module) {
            failures.push(format!("{kernel:?} {types:?} [{op}]: validate: {}", e.emit_to_string(&src)));
        }
      }
    }
    assert!(failures.is_empty(), "{} of {checked} shaders invalid:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_broken_shader_is_caught() {
    // The check itself must be able to fail.
    let src = source(hetsched::backend::wgpu::kernels::Kernel::Unary, "undefined_fn(x)", &[]);
    let parsed = naga::front::wgsl::parse_str(&src);
    let invalid = match parsed {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty()).validate(&m).is_err(),
    };
    assert!(invalid);
}
