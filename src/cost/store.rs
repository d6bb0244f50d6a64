//! Where profiles live: one file per device in the user's cache directory
//! (`$XDG_CACHE_HOME/hetsched/`, else `~/.cache/hetsched/`), named by the device's fingerprint,
//! so a profile from another device or another build is never picked up; and a profile file
//! given by the user, checked against this machine's devices.

use super::{profiler, DeviceProfile, ProfileKind, ProfileSet};
use crate::backend::Backend;
use crate::error::{Error, Result};
use std::path::PathBuf;

/// The folder cached profiles are kept in.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HETSCHED_PROFILE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))).unwrap_or_else(std::env::temp_dir);
    base.join("hetsched")
}

/// The cache file of `backend`'s profile for this build.
pub fn cache_path(backend: &dyn Backend) -> PathBuf {
    let fp = profiler::fingerprint(backend);
    cache_dir().join(format!("profile-{}-{}.json", fp.device, fp.key()))
}

/// How a device's profile was obtained, for messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Cache(PathBuf),
    File(PathBuf),
    Measured(PathBuf),
    Virtual,
}

/// The cached profile of `backend`, if one was measured on this device with this build.
pub fn cached(backend: &dyn Backend) -> Result<Option<DeviceProfile>> {
    let path = cache_path(backend);
    if !path.exists() {
        return Ok(None);
    }
    let set = match ProfileSet::load(&path) {
        Ok(s) => s,
        // A damaged cache entry is measured again, never used.
        Err(e) => {
            eprintln!("warning: ignoring the cached profile {}: {e}", path.display());
            return Ok(None);
        }
    };
    let fp = profiler::fingerprint(backend);
    Ok(set.devices.into_iter().find(|p| p.fingerprint.as_ref() == Some(&fp)))
}

/// Saves `p` as `backend`'s cached profile.
pub fn save_cached(backend: &dyn Backend, p: &DeviceProfile) -> Result<PathBuf> {
    let path = cache_path(backend);
    ProfileSet { devices: vec![p.clone()] }.save(&path)?;
    Ok(path)
}

/// Checks that a measured profile from a file belongs to `backend`'s device and this build.
pub fn check_matches(p: &DeviceProfile, backend: &dyn Backend, origin: &str) -> Result<()> {
    if p.kind == ProfileKind::Virtual {
        return Ok(());
    }
    let here = profiler::fingerprint(backend);
    match &p.fingerprint {
        Some(fp) if *fp == here => Ok(()),
        Some(fp) => Err(Error::Profile(format!(
            "{origin}: the '{}' profile was measured on another device or build ({}); run `hetsched profile --devices {}` here",
            p.device,
            fp.differences(&here).join("; "),
            p.device
        ))),
        None => Err(Error::Profile(format!("{origin}: the '{}' profile has no fingerprint", p.device))),
    }
}

/// Profiles for `devices` (real device names or names of virtual devices in `file` or `virtuals`):
/// from `file` where it has them (checked against this machine), else the cache, else measured
/// now (and cached). `progress` reports measurements.
pub fn resolve(devices: &[String], file: Option<&std::path::Path>, virtuals: &[DeviceProfile], quick: bool, progress: &mut dyn FnMut(&str, &str, usize, usize)) -> Result<(ProfileSet, Vec<(String, Source)>)> {
    let from_file = match file {
        Some(f) => Some(ProfileSet::load(f)?),
        None => None,
    };
    let (mut set, mut sources) = (ProfileSet::default(), vec![]);
    for d in devices {
        if let Some(v) = virtuals.iter().find(|v| &v.device == d) {
            set.insert(v.clone());
            sources.push((d.clone(), Source::Virtual));
            continue;
        }
        if let Some(p) = from_file.as_ref().and_then(|s| s.get(d)) {
            if p.kind == ProfileKind::Virtual {
                set.insert(p.clone());
                sources.push((d.clone(), Source::Virtual));
                continue;
            }
            let backend = crate::backend::by_name(d)?;
            let origin = file.map(|f| f.display().to_string()).unwrap_or_default();
            check_matches(p, &*backend, &origin)?;
            set.insert(p.clone());
            sources.push((d.clone(), Source::File(file.unwrap().to_path_buf())));
            continue;
        }
        let backend = crate::backend::by_name(d)?;
        if let Some(p) = cached(&*backend)? {
            set.insert(p);
            sources.push((d.clone(), Source::Cache(cache_path(&*backend))));
            continue;
        }
        let p = profiler::measure(&*backend, profiler::ProfileOptions { quick }, &mut |what, i, n| progress(d, what, i, n))?;
        let path = save_cached(&*backend, &p)?;
        set.insert(p);
        sources.push((d.clone(), Source::Measured(path)));
    }
    Ok((set, sources))
}
