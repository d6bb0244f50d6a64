//! FNV-1a, the stable 64-bit hash behind cache keys and fingerprints (compiled PTX files,
//! device profiles, plans): stable across builds and platforms, unlike `std`'s hasher.

pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
