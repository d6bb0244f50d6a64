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

