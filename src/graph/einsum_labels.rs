//! Einsum equations: labels per operand (with "..." expanded), the output labels (explicit or
//! implicit) and the size of every label. Shared by shape inference and the kernels.

use crate::error::Result;
use crate::bail;
use std::collections::BTreeMap;

/// Labels of one term with "..." expanded to placeholder labels ('A'+k, counted from the right).
fn expand(term: &str, rank: usize, ell: usize) -> Result<Vec<char>> {
    let letters: Vec<char> = term.replace("...", "").chars().collect();
    if !term.contains("...") {
        if letters.len() != rank {
            bail!("einsum term '{term}' has {} labels for rank {rank}", letters.len());
        }
        return Ok(letters);
    }
    let k = rank.checked_sub(letters.len()).ok_or_else(|| crate::error::Error::Tensor(format!("einsum term '{term}' too long for rank {rank}")))?;
    let (pre, post) = term.split_once("...").unwrap();
    let mut v: Vec<char> = pre.chars().collect();
    v.extend((0..k).map(|i| char::from_u32(0x100 + (ell - k + i) as u32).unwrap()));
    v.extend(post.chars());
    Ok(v)
}

/// Output labels and shape of an einsum over operands of the given shapes.
pub fn einsum_plan(equation: &str, shapes: &[&[usize]]) -> Result<(Vec<Vec<char>>, Vec<char>, BTreeMap<char, usize>)> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != shapes.len() {
        bail!("einsum '{equation}' names {} operands, got {}", terms.len(), shapes.len());
    }
    let ell = terms.iter().zip(shapes).filter(|(t, _)| t.contains("...")).map(|(t, s)| s.len() - t.replace("...", "").len()).max().unwrap_or(0);
    let labels: Vec<Vec<char>> = terms.iter().zip(shapes).map(|(t, s)| expand(t, s.len(), ell)).collect::<Result<_>>()?;
    let mut dims: BTreeMap<char, usize> = BTreeMap::new();
    for (l, s) in labels.iter().zip(shapes) {
        for (&c, &d) in l.iter().zip(s.iter()) {
            let e = dims.entry(c).or_insert(d);
            if *e != d {
                if *e == 1 && (c as u32) >= 0x100 {
                    *e = d;
                } else if !(d == 1 && (c as u32) >= 0x100) {
                    bail!("einsum label '{c}' has sizes {} and {d}", *e);
                }
            }
        }
    }
    let out: Vec<char> = match rhs {
        Some(r) => {
            let placeholders: Vec<char> = (0..ell).map(|i| char::from_u32(0x100 + i as u32).unwrap()).collect();
            let (pre, post) = r.split_once("...").map(|(a, b)| (a.to_string(), b.to_string())).unwrap_or((r.clone(), String::new()));
            let mut v: Vec<char> = pre.chars().collect();
            if r.contains("...") {
                v.extend(placeholders);
            }
            v.extend(post.chars());
            v
        }
        None => {
            let mut count: BTreeMap<char, usize> = BTreeMap::new();
            for l in &labels {
                for &c in l {
                    *count.entry(c).or_default() += 1;
                }
            }
            let mut v: Vec<char> = (0..ell).map(|i| char::from_u32(0x100 + i as u32).unwrap()).collect();
            v.extend(count.iter().filter(|(c, &n)| n == 1 && (**c as u32) < 0x100).map(|(c, _)| *c));
            v
        }
    };
    for c in &out {
        if !dims.contains_key(c) {
            bail!("einsum output label '{c}' appears in no input");
        }
    }
    Ok((labels, out, dims))
}


/// An einsum of one operand (a pure permutation) or two (permutes around one batched GEMM):
/// with two, the labels both share and keep are the batch, those both share and drop are
/// contracted, those only one keeps are its free rows or columns. Covers equations with no
/// label repeated within an operand, none summed away from one operand alone, and no
/// broadcasting; the kernels of every device use it, and sum directly otherwise.
pub struct EinsumGemm {
    pub labels: Vec<Vec<char>>,
    pub out: Vec<char>,
    pub dims: BTreeMap<char, usize>,
}

/// The labels of a two-operand [`EinsumGemm`] by role, each in the order the GEMM lays it out.
pub struct GemmLabels {
    pub batch: Vec<char>,
    pub left: Vec<char>,
    pub contract: Vec<char>,
    pub right: Vec<char>,
}

impl EinsumGemm {
    pub fn new(equation: &str, shapes: &[&[usize]]) -> Option<EinsumGemm> {
        let (labels, out, dims) = einsum_plan(equation, shapes).ok()?;
        let distinct = |l: &[char]| l.iter().enumerate().all(|(i, c)| !l[..i].contains(c));
        let sized = labels.iter().zip(shapes).all(|(l, s)| l.iter().zip(s.iter()).all(|(c, &d)| dims[c] == d));
        if !labels.iter().all(|l| distinct(l)) || !distinct(&out) || !sized {
            return None;
        }
        // Every label an operand has is kept or shared: nothing is summed out of one operand alone.
        let covered = match labels.as_slice() {
            [a] => a.len() == out.len() && a.iter().all(|c| out.contains(c)),
            [a, b] => a.iter().all(|c| out.contains(c) || b.contains(c)) && b.iter().all(|c| out.contains(c) || a.contains(c)),
            _ => false,
        };
        covered.then_some(EinsumGemm { labels, out, dims })
    }

    /// Roles of the labels of a two-operand einsum.
    pub fn roles(&self) -> Option<GemmLabels> {
        let [la, lb] = self.labels.as_slice() else { return None };
        let pick = |keep: &dyn Fn(&char) -> bool, order: &[char]| -> Vec<char> { order.iter().copied().filter(|c| keep(c)).collect() };
        Some(GemmLabels {
            batch: pick(&|c| la.contains(c) && lb.contains(c), &self.out),
            contract: pick(&|c| lb.contains(c) && !self.out.contains(c), la),
            left: pick(&|c| la.contains(c) && !lb.contains(c), &self.out),
            right: pick(&|c| lb.contains(c) && !la.contains(c), &self.out),
        })
    }

    /// Elements spanned by labels `ls`.
    pub fn size(&self, ls: &[char]) -> usize {
        ls.iter().map(|c| self.dims[c]).product()
    }

    /// Shape of a tensor labelled `ls`.
    pub fn shape(&self, ls: &[char]) -> Vec<usize> {
        ls.iter().map(|c| self.dims[c]).collect()
    }

    /// The permutation that lays a tensor labelled `from` out as `to`.
    pub fn perm(from: &[char], to: &[char]) -> Vec<usize> {
        to.iter().map(|c| from.iter().position(|f| f == c).unwrap_or(0)).collect()
    }
}
