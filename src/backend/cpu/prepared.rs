//! State a kernel derives once from a node's constant inputs and keeps for every later run of
//! the executable: a convolution's weights packed for its register kernel. Packing per run cost
//! more than the arithmetic on late layers (512 x 4608 weights against 9 output pixels).

use std::any::Any;
use std::sync::OnceLock;

/// One node's prepared state, made by the first run that needs it (others wait for it).
#[derive(Default)]
pub struct Prepared(OnceLock<(Box<dyn Any + Send + Sync>, usize)>);

impl Prepared {
    /// The state, made by `make` (the state and its size in bytes) on first use. A node's
    /// kernel keeps one kind of state.
    pub fn get_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> (T, usize)) -> &T {
        let (state, _) = self.0.get_or_init(|| {
            let (state, bytes) = make();
            (Box::new(state), bytes)
        });
        state.downcast_ref::<T>().expect("a node's prepared state has one type")
    }

    /// Bytes the state holds (0 before it is made), reported as the executable's workspace.
    pub fn bytes(&self) -> usize {
        self.0.get().map_or(0, |s| s.1)
    }
}
