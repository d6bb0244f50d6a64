//! The activation arena of a GPU plan: lowering gives every value and temporary a buffer of
//! its own; [`share`] then lets buffers whose lives do not overlap use one device allocation.
//! A buffer lives from the first launch that binds it to the last (launches run in order on
//! one queue, so a later launch never sees an earlier occupant still in use). Constants,
//! inputs, outputs and the index check's flag keep their own allocations: uploads and
//! read-backs touch them outside the launches.
//!
//! Sharing is exact: a launch still binds a buffer of at least its length and element type,
//! so the backends create the shared buffers like any other and the kernels see no change.

use super::{BufferSpec, Elem, GpuPlan};
use crate::analysis::lifetimes::{self, Life};
use crate::backend::gpu::layout::buffer_bytes;

/// Rewrites `plan` so that buffers with disjoint lives share allocations.
pub fn share(plan: &mut GpuPlan) {
    let (slot_of, slots) = assign(plan);
    for l in &mut plan.launches {
        for b in &mut l.bufs {
            *b = slot_of[*b];
        }
    }
    for i in &mut plan.inputs {
        i.buffer = slot_of[i.buffer];
    }
    for o in &mut plan.outputs {
        o.buffer = slot_of[o.buffer];
    }
    if let Some(c) = &mut plan.run_check {
        c.flag = slot_of[c.flag];
    }
    plan.buffers = slots;
}

/// The life of each buffer: the first and last launch binding it (None: no launch does).
fn lives(plan: &GpuPlan) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; plan.buffers.len()];
    for (i, l) in plan.launches.iter().enumerate() {
        for &b in &l.bufs {
            life[b] = Some(life[b].map_or((i, i), |(first, _)| (first, i)));
        }
    }
    life
}

/// Each buffer's allocation, and the allocations.
fn assign(plan: &GpuPlan) -> (Vec<usize>, Vec<BufferSpec>) {
    let n = plan.buffers.len();
    let mut pinned = vec![false; n];
    for (b, spec) in plan.buffers.iter().enumerate() {
        pinned[b] = spec.init.is_some();
    }
    for i in &plan.inputs {
        pinned[i.buffer] = true;
    }
    for o in &plan.outputs {
        pinned[o.buffer] = true;
    }
    if let Some(c) = &plan.run_check {
        pinned[c.flag] = true;
    }
    let life = lives(plan);
    // Buffers no launch binds are left alone, pinned or not.
    let is_shareable: Vec<bool> = (0..n).map(|b| !pinned[b] && life[b].is_some()).collect();
    let shareable: Vec<usize> = (0..n).filter(|&b| is_shareable[b]).collect();
    let mut slot_of: Vec<usize> = vec![usize::MAX; n];
    let mut slots: Vec<BufferSpec> = vec![];
    for b in (0..n).filter(|&b| !is_shareable[b]) {
        slot_of[b] = slots.len();
        slots.push(plan.buffers[b].clone());
    }
    let shared_lives: Vec<Life<Elem>> = shareable
        .iter()
        .map(|&b| {
            let (first, last) = life[b].expect("shareable buffers have lives");
            Life { first, last, kind: plan.buffers[b].elem, len: plan.buffers[b].len }
        })
        .collect();
    let (shared_of, shared) = lifetimes::share(&shared_lives);
    for (&b, s) in shareable.iter().zip(shared_of) {
        slot_of[b] = slots.len() + s;
    }
    slots.extend(shared.into_iter().map(|(elem, len)| BufferSpec { len, elem, init: None }));
    (slot_of, slots)
}

/// Bytes of a plan's constant buffers and of the rest (activations, inputs, outputs).
pub fn plan_bytes(plan: &GpuPlan) -> (u64, u64) {
    plan.buffers.iter().fold((0, 0), |(weights, rest), b| {
        let bytes = buffer_bytes(b.len, b.elem) as u64;
        if b.init.is_some() { (weights + bytes, rest) } else { (weights, rest + bytes) }
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::{Elem, Kernel, Launch, OpSpec, PlanInput, PlanOutput};
    use crate::tensor::{DType, Tensor};
    use std::sync::Arc;

    fn launch(bufs: &[usize]) -> Launch {
        Launch { kernel: Kernel::Copy, op: OpSpec::None, params: vec![], bufs: bufs.to_vec(), grid: [1, 1, 1] }
    }

    fn plan(buffers: Vec<BufferSpec>, launches: Vec<Launch>, input: usize, output: usize) -> GpuPlan {
        GpuPlan {
            buffers,
            launches,
            inputs: vec![PlanInput { buffer: input, name: "x".into(), shape: vec![1] }],
            outputs: vec![PlanOutput { buffer: output, shape: vec![1], dtype: DType::F32 }],
            run_check: None,
            spans: vec![],
        }
    }

    /// Bytes of the shareable buffers each on its own, and of the shared allocations holding them.
    fn separate_and_shared(p: &GpuPlan, slot_of: &[usize], slots: &[BufferSpec]) -> (u64, u64) {
        let pinned: std::collections::HashSet<usize> = (0..p.buffers.len()).filter(|&b| p.buffers[b].init.is_some() || p.inputs.iter().any(|i| i.buffer == b) || p.outputs.iter().any(|o| o.buffer == b)).collect();
        let bytes = |s: &BufferSpec| buffer_bytes(s.len, s.elem) as u64;
        let bound: std::collections::HashSet<usize> = p.launches.iter().flat_map(|l| l.bufs.iter().copied()).collect();
        let shareable: Vec<usize> = (0..p.buffers.len()).filter(|b| !pinned.contains(b) && bound.contains(b)).collect();
        let separate = shareable.iter().map(|&b| bytes(&p.buffers[b])).sum();
        let held: std::collections::BTreeSet<usize> = shareable.iter().map(|&b| slot_of[b]).collect();
        (separate, held.iter().map(|&s| bytes(&slots[s])).sum())
    }

    fn spec(len: usize, elem: Elem) -> BufferSpec {
        BufferSpec { len, elem, init: None }
    }

    #[test]
    fn a_chain_needs_two_allocations() {
        // x -> a -> b -> c -> d -> y: each temporary is dead once the next is written.
        let bufs = vec![spec(8, Elem::F32), spec(100, Elem::F32), spec(50, Elem::F32), spec(200, Elem::F32), spec(10, Elem::F32), spec(8, Elem::F32)];
        let launches = (0..5).map(|i| launch(&[i, i + 1])).collect();
        let p = plan(bufs, launches, 0, 5);
        let (slot_of, slots) = assign(&p);
        // a and c alternate with b and d; x and y keep their own.
        assert_eq!(slot_of[1], slot_of[3]);
        assert_eq!(slot_of[2], slot_of[4]);
        assert_ne!(slot_of[1], slot_of[2]);
        assert_eq!(slots[slot_of[1]].len, 200);
        assert_eq!(slots[slot_of[2]].len, 50);
        assert_eq!(separate_and_shared(&p, &slot_of, &slots), (4 * 360, 4 * 250));
        assert_eq!(slots.len(), 4);
    }

    #[test]
    fn pinned_buffers_and_other_types_are_not_shared() {
        let weight = BufferSpec { len: 4, elem: Elem::F32, init: Some(Arc::new(Tensor::from_f32(&[4], vec![1.0; 4]).unwrap())) };
        // x -> a (f16) -> b (f32, reads the weight) -> y; c (f16) after a is dead may take a's.
        let bufs = vec![spec(8, Elem::F32), spec(64, Elem::F16), spec(64, Elem::F32), weight, spec(64, Elem::F16), spec(8, Elem::F32)];
        let p = plan(bufs, vec![launch(&[0, 1]), launch(&[1, 3, 2]), launch(&[2, 4]), launch(&[4, 5])], 0, 5);
        let (slot_of, slots) = assign(&p);
        assert_eq!(slot_of[1], slot_of[4], "same type, disjoint lives");
        assert_ne!(slot_of[2], slot_of[1]);
        for pinned in [0, 3, 5] {
            assert!((0..6).filter(|&b| b != pinned).all(|b| slot_of[b] != slot_of[pinned]), "buffer {pinned} is shared");
            assert_eq!(slots[slot_of[pinned]].len, p.buffers[pinned].len);
        }
        assert!(slots[slot_of[3]].init.is_some());
    }

    /// Random plans (seeded): no two buffers whose lives overlap share an allocation, and each
    /// allocation holds its occupants' length and type.
    #[test]
    fn random_plans_never_overlap() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        for _ in 0..200 {
            let n = 2 + next(30);
            let bufs: Vec<BufferSpec> = (0..n).map(|_| spec(1 + next(1000), if next(4) == 0 { Elem::F16 } else { Elem::F32 })).collect();
            let launches: Vec<Launch> = (0..1 + next(40)).map(|_| launch(&(0..1 + next(4)).map(|_| next(n)).collect::<Vec<_>>())).collect();
            let p = plan(bufs, launches, next(n), next(n));
            let life = lives(&p);
            let (slot_of, slots) = assign(&p);
            let (separate, shared) = separate_and_shared(&p, &slot_of, &slots);
            assert!(shared <= separate);
            for a in 0..n {
                assert!(slots[slot_of[a]].len >= p.buffers[a].len && slots[slot_of[a]].elem == p.buffers[a].elem);
                for b in a + 1..n {
                    if let (Some(x), Some(y)) = (life[a], life[b]) {
                        let overlap = x.0 <= y.1 && y.0 <= x.1;
                        assert!(!(overlap && slot_of[a] == slot_of[b]), "buffers {a} {x:?} and {b} {y:?} share");
                    }
                }
            }
            for l in &p.launches {
                let mut seen: Vec<usize> = l.bufs.iter().map(|&b| slot_of[b]).collect();
                let distinct: std::collections::HashSet<_> = l.bufs.iter().collect();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), distinct.len(), "one launch binds one allocation twice");
            }
        }
    }
}
