//! The options every cost-aware command shares: which devices, which profile, virtual devices.

use clap::Args;
use hetsched::cost::{store, ProfileSet, Roofline};
use hetsched::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Clone, Debug, Default)]
pub struct CostArgs {
    /// Devices, comma-separated (cpu, wgpu, cuda, or a virtual device's name); default: every
    /// available device plus the virtual ones.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// A profile file (from `hetsched profile --out`); devices it lacks come from the cache or
    /// are measured.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// A virtual device, NAME:key=value,... (keys: gflops, depthwise_gflops, gbps, launch_us,
    /// run_us, mem, link_gbps, link_us, h2d_gbps, d2h_gbps, paced). Repeatable.
    #[arg(long = "virtual")]
    pub virtuals: Vec<String>,
    /// When a profile must be measured, measure the quick sweep.
    #[arg(long)]
    pub quick: bool,
}

/// A progress bar for profile measurements, one line per device.
pub fn progress_reporter() -> impl FnMut(&str, &str, usize, usize) {
    let mut bar: Option<(String, ProgressBar)> = None;
    move |device: &str, what: &str, i: usize, n: usize| {
        if bar.as_ref().is_none_or(|(d, _)| d != device) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            let b = ProgressBar::new(n as u64);
            b.set_style(ProgressStyle::with_template("profiling {prefix:5} [{bar:30}] {pos}/{len} {elapsed} {msg}").unwrap().progress_chars("=> "));
            b.set_prefix(device.to_string());
            bar = Some((device.to_string(), b));
        }
        let (_, b) = bar.as_ref().unwrap();
        b.set_position(i as u64);
        b.set_message(what.to_string());
        if i >= n {
            b.finish();
        }
    }
}

impl CostArgs {
    pub fn virtual_profiles(&self) -> Result<Vec<hetsched::cost::DeviceProfile>> {
        self.virtuals.iter().map(|s| hetsched::cost::virtual_device::parse_spec(s)).collect()
    }

    /// The device list: as given, or every available device plus the virtual ones.
    pub fn device_list(&self) -> Result<Vec<String>> {
        let virtuals = self.virtual_profiles()?;
        if !self.devices.is_empty() {
            return Ok(self.devices.clone());
        }
        let mut d = vec![];
        for info in hetsched::backend::all() {
            if info.available {
                d.push(info.name);
            } else if info.name != "cuda" || cfg!(feature = "cuda") {
                let why = info.details.iter().find(|(k, _)| k == "reason").map(|(_, v)| v.as_str()).unwrap_or("unavailable");
                eprintln!("leaving out {}: {why}", info.name);
            }
        }
        d.extend(virtuals.into_iter().map(|v| v.device));
        Ok(d)
    }

    /// The cost model for the device list: profiles from the file, the cache, or measured now.
    pub fn model(&self) -> Result<(Roofline, Vec<String>)> {
        let devices = self.device_list()?;
        let virtuals = self.virtual_profiles()?;
        let mut report = progress_reporter();
        let (set, sources): (ProfileSet, _) = store::resolve(&devices, self.profile.as_deref(), &virtuals, self.quick, &mut report)?;
        for (d, s) in sources {
            match s {
                store::Source::Measured(p) => eprintln!("{d}: measured a profile, saved to {}", p.display()),
                store::Source::Cache(p) => eprintln!("{d}: profile from {}", p.display()),
                store::Source::File(p) => eprintln!("{d}: profile from {}", p.display()),
                store::Source::Virtual => {}
            }
        }
        Ok((Roofline::new(set), devices))
    }
}
