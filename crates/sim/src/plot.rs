//! The picture of `atm simulate --svg`: what ATM saves, as a self-contained SVG.

use std::fmt::Write as _;

/// One measured configuration for the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPoint {
    /// Endpoints in all.
    pub endpoints: u64,
    /// Accounts.
    pub accounts: u64,
    /// Manual authentications without ATM: the complete mesh, n(n-1).
    pub without_atm: f64,
    /// Manual authentications with literal XEP rules: the initial ones plus
    /// every authentication that never happened automatically.
    pub xep_manual: f64,
    /// Manual authentications with complete ATM (the initial ones; the mean
    /// share of the mesh reached is in `complete_share`).
    pub complete_manual: f64,
    /// Share of the mesh complete ATM reached.
    pub complete_share: f64,
    /// Trust messages per endpoint, literal XEP rules.
    pub xep_messages_per_endpoint: f64,
    /// Trust messages per endpoint, complete ATM.
    pub complete_messages_per_endpoint: f64,
}

const W: f64 = 1000.0;
const H: f64 = 540.0;
const PANEL_W: f64 = 400.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 90.0;
const LEFT: [f64; 2] = [80.0, 570.0];
const COMPLETE: &str = "#1b7f3b";
const XEP: &str = "#d17a00";
const NO_ATM: &str = "#b3261e";

struct Axis {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    log_y: bool,
    left: f64,
}

impl Axis {
    fn x(&self, v: f64) -> f64 {
        self.left + (v - self.x0) / (self.x1 - self.x0).max(1e-9) * PANEL_W
    }
    fn y(&self, v: f64) -> f64 {
        let t = if self.log_y {
            (v.max(1.0).log10() - self.y0.log10()) / (self.y1.log10() - self.y0.log10()).max(1e-9)
        } else {
            (v - self.y0) / (self.y1 - self.y0).max(1e-9)
        };
        TOP + PANEL_H - t * PANEL_H
    }
}

fn nice_max(v: f64) -> f64 {
    let p = 10f64.powf(v.max(1.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn frame(
    svg: &mut String,
    axis: &Axis,
    title: &str,
    y_label: &str,
    ticks_y: &[f64],
    ticks_x: &[f64],
) {
    let l = axis.left;
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{title}</text>"##,
        l,
        TOP - 14.0
    );
    let _ = write!(
        svg,
        r##"<rect x="{l:.1}" y="{TOP:.1}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
    );
    for &t in ticks_y {
        let y = axis.y(t);
        let _ = write!(
            svg,
            r##"<line x1="{l:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            l + PANEL_W,
            l - 6.0,
            y + 4.0,
            human(t)
        );
    }
    for &v in ticks_x {
        let x = axis.x(v);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            TOP + PANEL_H + 16.0,
            human(v.round())
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">endpoints in all</text>"##,
        l + PANEL_W / 2.0,
        TOP + PANEL_H + 34.0
    );
    let _ = write!(
        svg,
        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{y_label}</text>"##,
        l - 52.0,
        TOP + PANEL_H / 2.0
    );
}

fn human(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.0}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], color: &str, dash: bool) {
    if points.len() < 2 {
        return;
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let dash = if dash {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"##,
        path.join(" ")
    );
}

fn marker(svg: &mut String, x: f64, y: f64, color: &str, square: bool) {
    if square {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{color}"/>"##,
            x - 4.0,
            y - 4.0
        );
    } else {
        let _ = write!(
            svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{color}"/>"##
        );
    }
}

/// Draws the picture. `devices_per_account` labels the formula lines: with d
/// devices per account and n endpoints, k = n/d accounts need n(n-1) manual
/// authentications without ATM and 2((n-k) + k(k-1)/2) with it.
pub fn svg(points: &[PlotPoint], devices_label: &str) -> String {
    let mut pts = points.to_vec();
    pts.sort_by_key(|p| p.endpoints);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="30" font-size="17" font-weight="bold" text-anchor="middle">Automatic Trust Management: what users must do, and what it costs ({devices_label})</text>"##,
        W / 2.0
    );
    let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
        svg.push_str("<text x=\"40\" y=\"80\">no data</text></svg>");
        return svg;
    };
    let x0 = first.endpoints as f64;
    let x1 = (last.endpoints as f64).max(x0 + 1.0);
    // Left panel: manual authentications, log scale.
    let max_y = pts.iter().map(|p| p.without_atm).fold(1.0, f64::max);
    let left = Axis {
        x0,
        x1,
        y0: 1.0,
        y1: nice_max(max_y),
        log_y: true,
        left: LEFT[0],
    };
    let mut ticks = Vec::new();
    let mut t = 1.0;
    while t <= left.y1 {
        ticks.push(t);
        t *= 10.0;
    }
    let ticks_x: Vec<f64> = pts.iter().map(|p| p.endpoints as f64).collect();
    frame(
        &mut svg,
        &left,
        "Manual authentications needed (log scale)",
        "manual authentications",
        &ticks,
        &ticks_x,
    );
    // Formula lines, over the measured accounts (k = n/d interpolated).
    let formula = |p: &PlotPoint, without: bool| -> f64 {
        let n = p.endpoints as f64;
        let k = p.accounts as f64;
        if without {
            n * (n - 1.0)
        } else {
            2.0 * ((n - k) + k * (k - 1.0) / 2.0)
        }
    };
    let line = |without: bool| -> Vec<(f64, f64)> {
        pts.iter()
            .map(|p| (left.x(p.endpoints as f64), left.y(formula(p, without))))
            .collect()
    };
    polyline(&mut svg, &line(true), NO_ATM, true);
    polyline(&mut svg, &line(false), COMPLETE, true);
    for p in &pts {
        let x = left.x(p.endpoints as f64);
        marker(&mut svg, x, left.y(p.without_atm), NO_ATM, false);
        marker(&mut svg, x, left.y(p.xep_manual), XEP, true);
        marker(&mut svg, x, left.y(p.complete_manual), COMPLETE, false);
    }
    // Right panel: trust messages per endpoint.
    let max_m = pts
        .iter()
        .map(|p| {
            p.complete_messages_per_endpoint
                .max(p.xep_messages_per_endpoint)
        })
        .fold(1.0, f64::max);
    let step = nice_max(max_m / 5.0);
    let top = (max_m / step).ceil().max(1.0) * step;
    let right = Axis {
        x0,
        x1,
        y0: 0.0,
        y1: top,
        log_y: false,
        left: LEFT[1],
    };
    let ticks: Vec<f64> = (0..=((top / step).round() as usize))
        .map(|i| step * i as f64)
        .collect();
    frame(
        &mut svg,
        &right,
        "Trust messages sent per endpoint",
        "trust messages per endpoint",
        &ticks,
        &ticks_x,
    );
    for (color, value, square) in [
        (
            COMPLETE,
            (|p: &PlotPoint| p.complete_messages_per_endpoint) as fn(&PlotPoint) -> f64,
            false,
        ),
        (XEP, |p: &PlotPoint| p.xep_messages_per_endpoint, true),
    ] {
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (right.x(p.endpoints as f64), right.y(value(p))))
            .collect();
        polyline(&mut svg, &line, color, false);
        for (x, y) in line {
            marker(&mut svg, x, y, color, square);
        }
    }
    // Legend.
    let ly = TOP + PANEL_H + 62.0;
    let items = [
        (
            NO_ATM,
            false,
            true,
            "without ATM: every endpoint authenticates every other, n(n-1)",
        ),
        (
            XEP,
            true,
            false,
            "literal XEP-0450 rules: initial + what never converges",
        ),
        (
            COMPLETE,
            false,
            true,
            "complete ATM (this project): initial only, 2((n-k)+k(k-1)/2)",
        ),
    ];
    for (i, (color, square, dashed, label)) in items.iter().enumerate() {
        let x = 80.0;
        let ly = ly + 20.0 * i as f64;
        if *dashed {
            polyline(&mut svg, &[(x, ly), (x + 26.0, ly)], color, true);
        }
        marker(&mut svg, x + 13.0, ly, color, *square);
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11">{label}</text>"##,
            x + 32.0,
            ly + 4.0
        );
    }
    let share = pts.iter().map(|p| p.complete_share).fold(1.0, f64::min);
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#444">marks: measured means; dashed lines: formulas (n endpoints, k accounts). Complete ATM reached at least {:.1}% of the mesh; right: lines join measured means.</text>"##,
        80.0,
        H - 16.0,
        share * 100.0
    );
    svg.push_str("</svg>");
    svg
}
