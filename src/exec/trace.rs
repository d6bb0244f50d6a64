//! Timelines of pipelined runs: every stage's work on every request as a span, written as the
//! Chrome Trace Event format that Perfetto and chrome://tracing open (a process per device, a
//! thread per stage's queue, flow arrows from each copy to the step that consumes it), or drawn
//! as hetsched's own Gantt picture in SVG (a lane per stage, requests coloured, predicted times
//! as dashed outlines).

use serde_json::json;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Compute,
    Copy,
}

#[derive(Clone, Debug)]
pub struct Span {
    pub request: u64,
    pub stage: String,
    pub device: String,
    pub lane: Lane,
    pub start: Instant,
    pub end: Instant,
    pub predicted_ms: f64,
    pub bytes: u64,
}

/// Spans and request completions of one pipeline, times from its creation.
pub struct Trace {
    origin: Instant,
    spans: Mutex<Vec<Span>>,
    done: Mutex<Vec<(u64, Instant, Instant)>>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace { origin: Instant::now(), spans: Mutex::default(), done: Mutex::default() }
    }
}

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, s: Span) {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    pub fn finish(&self, request: u64, submitted: Instant) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push((request, submitted, Instant::now()));
    }

    /// Forgets what was recorded (after a warm-up).
    pub fn clear(&self) {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.done.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Submit-to-completion time of every finished request, ms, by request id.
    pub fn latencies_ms(&self) -> Vec<(u64, f64)> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|&(id, s, e)| (id, (e - s).as_secs_f64() * 1e3)).collect()
    }

    /// Microseconds since the first of `spans` started (or the trace began).
    fn clock(&self, spans: &[Span]) -> impl Fn(Instant) -> f64 {
        let first = spans.iter().map(|s| s.start).min().unwrap_or(self.origin);
        move |t: Instant| t.saturating_duration_since(first).as_secs_f64() * 1e6
    }

    /// The Chrome Trace Event JSON.
    pub fn to_chrome_json(&self) -> String {
        let spans = self.spans();
        let us = self.clock(&spans);
        let mut devices: Vec<String> = vec![];
        let mut stages: Vec<(String, String, Lane)> = vec![];
        for s in &spans {
            if !devices.contains(&s.device) {
                devices.push(s.device.clone());
            }
            if !stages.iter().any(|(n, _, _)| n == &s.stage) {
                stages.push((s.stage.clone(), s.device.clone(), s.lane));
            }
        }
        let pid = |d: &str| devices.iter().position(|x| x == d).unwrap_or(0);
        let tid = |st: &str| stages.iter().position(|(n, _, _)| n == st).unwrap_or(0);
        let mut events = vec![];
        for (i, d) in devices.iter().enumerate() {
            events.push(json!({"ph": "M", "name": "process_name", "pid": i, "args": {"name": d}}));
        }
        for (i, (name, device, lane)) in stages.iter().enumerate() {
            let kind = if *lane == Lane::Copy { "copy engine" } else { "compute queue" };
            events.push(json!({"ph": "M", "name": "thread_name", "pid": pid(device), "tid": i, "args": {"name": format!("{name} ({kind})")}}));
        }
        let mut by_request: std::collections::BTreeMap<u64, Vec<&Span>> = Default::default();
        for s in &spans {
            let measured = (s.end - s.start).as_secs_f64() * 1e3;
            let cat = if s.lane == Lane::Copy { "copy" } else { "compute" };
            events.push(json!({
                "name": s.stage, "cat": cat, "ph": "X", "ts": us(s.start), "dur": (s.end - s.start).as_secs_f64() * 1e6,
                "pid": pid(&s.device), "tid": tid(&s.stage),
                "args": {"request": s.request, "predicted_ms": s.predicted_ms, "measured_ms": measured, "bytes": s.bytes}
            }));
            by_request.entry(s.request).or_default().push(s);
        }
        // Flow arrows: a copy to the step after it for the same request.
        let mut flow = 0u64;
        for spans in by_request.values_mut() {
            spans.sort_by_key(|s| s.start);
            for w in spans.windows(2) {
                if w[0].lane == Lane::Copy {
                    flow += 1;
                    events.push(json!({"ph": "s", "id": flow, "name": "transfer", "cat": "copy", "ts": us(w[0].end), "pid": pid(&w[0].device), "tid": tid(&w[0].stage)}));
                    events.push(json!({"ph": "f", "bp": "e", "id": flow, "name": "transfer", "cat": "copy", "ts": us(w[1].start), "pid": pid(&w[1].device), "tid": tid(&w[1].stage)}));
                }
            }
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
    }

    /// A Gantt chart: a lane per stage in pipeline order, each request's span in its colour,
    /// the predicted time as a dashed outline from the same start.
    pub fn to_svg(&self, title: &str) -> String {
        let spans = self.spans();
        let us = self.clock(&spans);
        let mut lanes: Vec<(String, String)> = vec![];
        for s in &spans {
            if !lanes.iter().any(|(n, _)| n == &s.stage) {
                lanes.push((s.stage.clone(), s.device.clone()));
            }
        }
        let end_ms = spans.iter().map(|s| us(s.end) / 1e3).fold(0.0, f64::max).max(1e-3);
        let (left, width, lane_h, top) = (170.0, 900.0, 28.0, 40.0);
        let x = |ms: f64| left + ms / end_ms * width;
        let height = top + lanes.len() as f64 * lane_h + 40.0;
        let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
        let mut svg = String::new();
        let _ = writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#, left + width + 20.0);
        let _ = writeln!(svg, r#"<text x="10" y="20" font-size="14">{}</text>"#, xml(title));
        for (i, (name, device)) in lanes.iter().enumerate() {
            let y = top + i as f64 * lane_h;
            let _ = writeln!(svg, r##"<rect x="{left}" y="{y}" width="{width}" height="{lane_h}" fill="{}"/>"##, if i % 2 == 0 { "#f4f4f4" } else { "#ffffff" });
            let _ = writeln!(svg, r#"<text x="10" y="{}">{} · {}</text>"#, y + lane_h * 0.65, xml(name), xml(device));
        }
        for s in &spans {
            let lane = lanes.iter().position(|(n, _)| n == &s.stage).unwrap_or(0);
            let y = top + lane as f64 * lane_h + 4.0;
            let (a, b) = (us(s.start) / 1e3, us(s.end) / 1e3);
            let colour = palette[(s.request % palette.len() as u64) as usize];
            let _ = writeln!(svg, r#"<rect x="{:.2}" y="{y}" width="{:.2}" height="{}" fill="{colour}"><title>request {} · {} · {:.3} ms measured, {:.3} ms predicted</title></rect>"#, x(a), (x(b) - x(a)).max(0.5), lane_h - 8.0, s.request, xml(&s.stage), b - a, s.predicted_ms);
            if s.predicted_ms > 0.0 {
                let _ = writeln!(svg, r#"<rect x="{:.2}" y="{y}" width="{:.2}" height="{}" fill="none" stroke="black" stroke-dasharray="3,2" stroke-width="0.8"/>"#, x(a), x(a + s.predicted_ms) - x(a), lane_h - 8.0);
            }
        }
        let axis_y = top + lanes.len() as f64 * lane_h + 16.0;
        for k in 0..=5 {
            let ms = end_ms * k as f64 / 5.0;
            let _ = writeln!(svg, r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{ms:.1} ms</text>"#, x(ms));
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
