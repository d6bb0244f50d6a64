//! Values whose lives do not overlap share one allocation: the interval assignment behind the
//! activation arenas of the GPU plans (`backend::gpu::arena`) and of the CPU executor
//! (`backend::cpu::arena`).

/// A value's life: the first and the last step that touch it (both inclusive), the kind of
/// element it holds (only values of one kind share) and its length in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life<K> {
    pub first: usize,
    pub last: usize,
    pub kind: K,
    pub len: usize,
}

/// Each life's allocation (`slot_of`, in the order of `lives`) and the allocations (kind and
/// length, the longest occupant's). Greedy by size (TensorFlow Lite's arena planner): the
/// longest lives are placed first, each in the smallest allocation of its kind none of whose
/// occupants' lives overlaps its own, else in a new one; an allocation is never grown, so the
/// total stays near the largest set of values live at once. Lives overlap when they share a
/// step: a step never writes a value into a buffer it still reads.
pub fn share<K: Copy + Eq>(lives: &[Life<K>]) -> (Vec<usize>, Vec<(K, usize)>) {
    let mut order: Vec<usize> = (0..lives.len()).collect();
    // Longest first; among equals, earliest first (stable, so the result is deterministic).
    order.sort_by_key(|&i| (std::cmp::Reverse(lives[i].len), lives[i].first));
    let mut slot_of = vec![usize::MAX; lives.len()];
    let mut slots: Vec<Allocation<K>> = vec![];
    for &i in &order {
        let life = &lives[i];
        let free = |s: &Allocation<K>| s.kind == life.kind && s.occupants.iter().all(|&(first, last)| last < life.first || life.last < first);
        let at = match slots.iter().enumerate().filter(|(_, s)| free(s)).min_by_key(|(_, s)| s.len) {
            Some((at, _)) => at,
            None => {
                slots.push(Allocation { kind: life.kind, len: life.len, occupants: vec![] });
                slots.len() - 1
            }
        };
        slots[at].occupants.push((life.first, life.last));
        slot_of[i] = at;
    }
    (slot_of, slots.into_iter().map(|s| (s.kind, s.len)).collect())
}

/// An allocation being planned: its kind, length, and its occupants' lives as (first, last).
struct Allocation<K> {
    kind: K,
    len: usize,
    occupants: Vec<(usize, usize)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(first: usize, last: usize, len: usize) -> Life<u8> {
        Life { first, last, kind: 0, len }
    }

    #[test]
    fn a_chain_alternates_between_two_allocations() {
        // a (steps 0-1) -> b (1-2) -> c (2-3) -> d (3-4): each is dead once the next is read.
        let lives = [life(0, 1, 100), life(1, 2, 50), life(2, 3, 200), life(3, 4, 10)];
        let (slot_of, slots) = share(&lives);
        assert_eq!(slot_of, vec![0, 1, 0, 1]);
        assert_eq!(slots, vec![(0, 200), (0, 50)]);
    }

    #[test]
    fn the_smallest_free_allocation_is_taken_and_kinds_never_mix() {
        // Two free allocations of 100 and 300 when the third life (80) starts: it takes 100.
        let lives = [life(0, 0, 300), life(0, 0, 100), life(1, 1, 80), Life { first: 2, last: 2, kind: 1, len: 10 }];
        let (slot_of, slots) = share(&lives);
        assert_eq!(slot_of[2], slot_of[1]);
        assert_eq!(slots[slot_of[1]].1, 100);
        assert_eq!(slots[slot_of[3]], (1, 10), "another kind gets its own allocation");
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn a_small_value_between_two_large_ones_does_not_grow_a_buffer() {
        // 10 (steps 0-1), 1000 (1-2), 10 (2-3), 1000 (3-4): by first step, the third would take
        // the first's buffer and the fourth grow... by size, the two large ones share one
        // buffer of 1000 and the small ones one of 10.
        let (slot_of, slots) = share(&[life(0, 1, 10), life(1, 2, 1000), life(2, 3, 10), life(3, 4, 1000)]);
        assert_eq!(slot_of[1], slot_of[3]);
        assert_eq!(slot_of[0], slot_of[2]);
        assert_eq!(slots.iter().map(|s| s.1).sum::<usize>(), 1010);
    }

    /// Seeded random lives: no two that overlap share an allocation, each allocation holds its
    /// occupants' length and kind, and the total is at least the most bytes live at one step.
    #[test]
    fn random_lives_never_overlap_in_one_allocation() {
        let mut rng = crate::test_values::Rng::new(17);
        let mut next = |m: usize| rng.below(m);
        for seed in 0..300 {
            let lives: Vec<Life<u8>> = (0..1 + next(40))
                .map(|_| {
                    let first = next(30);
                    Life { first, last: first + next(6), kind: next(2) as u8, len: 1 + next(500) }
                })
                .collect();
            let (slot_of, slots) = share(&lives);
            for (a, x) in lives.iter().enumerate() {
                assert!(slots[slot_of[a]].1 >= x.len && slots[slot_of[a]].0 == x.kind, "case {seed}");
                for (b, y) in lives.iter().enumerate().skip(a + 1) {
                    let overlap = x.first <= y.last && y.first <= x.last;
                    assert!(!(overlap && slot_of[a] == slot_of[b]), "case {seed}: lives {x:?} and {y:?} share");
                }
            }
            let peak = (0..40).map(|t| lives.iter().filter(|l| l.first <= t && t <= l.last).map(|l| l.len).sum::<usize>()).max().unwrap();
            assert!(slots.iter().map(|s| s.1).sum::<usize>() >= peak, "case {seed}");
        }
    }

    #[test]
    fn a_value_never_shares_with_one_it_is_computed_from() {
        // The step that last reads a value (step 3) writes the next one: they overlap.
        let (slot_of, _) = share(&[life(0, 3, 10), life(3, 5, 10)]);
        assert_ne!(slot_of[0], slot_of[1]);
    }
}
