//! Two small chart kinds as inline SVG (grouped bars, lines): readable in any browser, no server,
//! no script, no dependency.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 44.0;

/// Text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn frame(title: &str, max: f64, unit: &str) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#, escape(title));
    let plot = HEIGHT - TOP - BOTTOM;
    for tick in 0..=4 {
        let y = TOP + plot * (1.0 - f64::from(tick) / 4.0);
        let value = max * f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}{unit}</text>"##,
            WIDTH - 8.0,
            LEFT - 4.0,
            y + 4.0,
            short(value)
        );
    }
    svg
}

fn short(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn legend(svg: &mut String, names: &[(&str, &str)]) {
    for (i, (name, colour)) in names.iter().enumerate() {
        // A row under the title, so a long title never runs into it.
        let x = LEFT + 110.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="23" width="10" height="10" fill="{colour}"/><text x="{}" y="32">{}</text>"#,
            x + 14.0,
            escape(name)
        );
    }
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(title: &str, categories: &[String], series: &[(&str, &str, Vec<f64>)], unit: &str) -> String {
    let max = series.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-9);
    let mut svg = frame(title, max, unit);
    let plot = HEIGHT - TOP - BOTTOM;
    let group = (WIDTH - LEFT - 8.0) / categories.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    let label_every = (categories.len() / 16).max(1);
    for (c, category) in categories.iter().enumerate() {
        let x0 = LEFT + group * c as f64 + group * 0.1;
        for (s, (_, colour, values)) in series.iter().enumerate() {
            let h = plot * values.get(c).copied().unwrap_or(0.0) / max;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"/>"#,
                x0 + bar * s as f64,
                TOP + plot - h,
                bar.max(0.5)
            );
        }
        if c % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x0 + group * 0.4,
                HEIGHT - BOTTOM + 14.0,
                escape(category)
            );
        }
    }
    legend(&mut svg, &series.iter().map(|(n, c, _)| (*n, *c)).collect::<Vec<_>>());
    svg.push_str("</svg>");
    svg
}

/// Lines over labelled points; gaps where a value is missing.
pub fn lines(title: &str, points: &[String], series: &[(&str, &str, Vec<Option<f64>>)], unit: &str) -> String {
    let max = series.iter().flat_map(|(_, _, v)| v.iter().flatten().copied()).fold(0.0, f64::max).max(1e-9);
    let mut svg = frame(title, max, unit);
    let plot = HEIGHT - TOP - BOTTOM;
    let step = (WIDTH - LEFT - 16.0) / (points.len().max(2) - 1) as f64;
    for (_, colour, values) in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, value) in values.iter().enumerate() {
            match value {
                Some(v) => {
                    let (x, y) = (LEFT + step * i as f64, TOP + plot * (1.0 - v / max));
                    let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                    let _ = write!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#);
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(svg, r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#);
    }
    let label_every = (points.len() / 8).max(1);
    for (i, point) in points.iter().enumerate().filter(|(i, _)| i % label_every == 0) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + step * i as f64,
            HEIGHT - BOTTOM + 14.0,
            escape(point)
        );
    }
    legend(&mut svg, &series.iter().map(|(n, c, _)| (*n, *c)).collect::<Vec<_>>());
    svg.push_str("</svg>");
    svg
}
