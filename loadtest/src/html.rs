//! A self-contained HTML report: inline CSS and SVG charts, no scripts and
//! nothing fetched, so the file can be mailed or attached to an issue and
//! still render offline.
//!
//! Its stylesheet is the repository's `web/style.css`, which the server's
//! live dashboard embeds too, so the two share a look. Included as text at
//! build time: the load tester depends on no crate of ours.

use crate::report::Report;
use crate::stats::TimelinePoint;
use std::fmt::Write;

/// The look shared with the dashboard (palette, fonts, tables).
const STYLE: &str = include_str!("../../web/style.css");

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}ms")
    } else {
        format!("{:.0}µs", v * 1000.0)
    }
}

/// Latency lines over time on a log-10 axis, because p50 and max routinely
/// differ by two orders of magnitude and a linear axis flattens p50 to zero.
fn latency_chart(points: &[TimelinePoint]) -> String {
    let mut s = String::new();
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let t_max = points.last().map_or(1.0, |p| p.t_s).max(1e-3);
    let vals = points
        .iter()
        .flat_map(|p| [p.p50_ms, p.p99_ms, p.max_ms])
        .filter(|v| *v > 0.0);
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return "<p>No samples.</p>".into();
    }
    let lo_dec = lo.log10().floor();
    let hi_dec = hi.log10().ceil().max(lo_dec + 1.0);
    let y =
        |v: f64| TOP + ph - (v.max(10f64.powf(lo_dec)).log10() - lo_dec) / (hi_dec - lo_dec) * ph;
    let x = |t: f64| LEFT + t / t_max * pw;
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    );
    let mut d = lo_dec;
    while d <= hi_dec {
        let yy = y(10f64.powf(d));
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            fmt_ms(10f64.powf(d))
        );
        d += 1.0;
    }
    axis_x(&mut s, t_max, pw);
    for (name, color, get) in [
        (
            "max",
            "#d62728",
            (|p: &TimelinePoint| p.max_ms) as fn(&TimelinePoint) -> f64,
        ),
        ("p99", "#ff7f0e", |p| p.p99_ms),
        ("p50", "#1f77b4", |p| p.p50_ms),
    ] {
        let pts: Vec<String> = points
            .iter()
            .filter(|p| get(p) > 0.0)
            .map(|p| format!("{:.1},{:.1}", x(p.t_s), y(get(p))))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{name}</title></polyline>"#,
            pts.join(" ")
        );
    }
    legend(
        &mut s,
        &[("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("max", "#d62728")],
    );
    s.push_str("</svg>");
    s
}

fn axis_x(s: &mut String, t_max: f64, pw: f64) {
    for i in 0..=5 {
        let t = t_max * i as f64 / 5.0;
        let xx = LEFT + pw * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle" font-size="11">{t:.2}s</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
}

fn legend(s: &mut String, items: &[(&str, &str)]) {
    for (i, (name, color)) in items.iter().enumerate() {
        let xx = LEFT + 10.0 + i as f64 * 70.0;
        let _ = write!(
            s,
            r#"<rect x="{xx}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{}" font-size="11">{name}</text>"#,
            H - 12.0,
            xx + 16.0,
            H - 7.0
        );
    }
}

fn throughput_chart(points: &[TimelinePoint]) -> String {
    let mut s = String::new();
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let t_max = points.last().map_or(1.0, |p| p.t_s).max(1e-3);
    let hi = points.iter().map(|p| p.rps).fold(0.0, f64::max).max(1.0);
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    );
    for i in 0..=4 {
        let v = hi * i as f64 / 4.0;
        let yy = TOP + ph - ph * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{v:.0}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0
        );
    }
    axis_x(&mut s, t_max, pw);
    let pts: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                LEFT + p.t_s / t_max * pw,
                TOP + ph - p.rps / hi * ph
            )
        })
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="{}"/>"##,
        pts.join(" ")
    );
    legend(&mut s, &[("req/s", "#2ca02c")]);
    s.push_str("</svg>");
    s
}

fn histogram_chart(r: &Report) -> String {
    let b = &r.histogram;
    if b.is_empty() {
        return "<p>No samples.</p>".into();
    }
    let mut s = String::new();
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let hi = b.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let bw = pw / b.len() as f64;
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    );
    for (i, bucket) in b.iter().enumerate() {
        let h = bucket.count as f64 / hi * ph;
        let xx = LEFT + i as f64 * bw;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1f77b4"><title>≤ {} : {}</title></rect><text x="{:.1}" y="{}" text-anchor="middle" font-size="10">≤{}</text>"##,
            xx + 1.0,
            TOP + ph - h,
            (bw - 2.0).max(1.0),
            fmt_ms(bucket.upper_ms),
            bucket.count,
            xx + bw / 2.0,
            H - BOTTOM + 14.0,
            fmt_ms(bucket.upper_ms)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{}" font-size="11">requests per latency bucket (max bar = {hi:.0})</text>"#,
        TOP - 6.0
    );
    s.push_str("</svg>");
    s
}

/// Renders the whole report page.
pub fn render_html(r: &Report) -> String {
    let mut o = String::new();
    html_head(&mut o, r);
    html_checks(&mut o, r);
    html_latency_table(&mut o, r);
    html_charts(&mut o, r);
    html_responses(&mut o, r);
    html_sales(&mut o, r);
    o.push_str("</body></html>\n");
    o
}

/// The page head, the style sheet and the one-line summary.
fn html_head(o: &mut String, r: &Report) {
    let verdict = match &r.verdict {
        Some(v) if v.passed => r#"<span class="pass">PASS</span>"#.to_string(),
        Some(_) => r#"<span class="fail">FAIL</span>"#.to_string(),
        None => "no verification".to_string(),
    };
    let _ = write!(
        o,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>flashsale load test</title><style>
{STYLE}</style></head><body><h1>flashsale load test: {verdict}</h1>
<p>Target {} — {} — {} connections — seed {:#x}. {} requests in {:.3} s = <b>{:.0} req/s</b>.</p>"#,
        escape(&r.target),
        match r.rate {
            Some(rate) =>
                format!("open loop at {rate:.0} req/s (latency from scheduled send time)"),
            None => "closed loop".into(),
        },
        r.connections,
        r.seed,
        r.requests,
        r.duration_s,
        r.throughput_rps
    );
}

/// The verdict as a table.
fn html_checks(o: &mut String, r: &Report) {
    if let Some(v) = &r.verdict {
        o.push_str("<h2>Checks</h2><table><tr><th class=l>check</th><th class=l>result</th><th class=l>detail</th></tr>");
        for c in &v.checks {
            let _ = write!(
                o,
                "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td></tr>",
                c.name,
                if c.passed {
                    "<span class=pass>ok</span>"
                } else {
                    "<span class=fail>FAIL</span>"
                },
                escape(&c.detail)
            );
        }
        o.push_str("</table>");
    }
}

/// Latency percentiles, over all requests and per kind.
fn html_latency_table(o: &mut String, r: &Report) {
    o.push_str("<h2>Latency (ms)</h2><table><tr><th class=l>op</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
    let rows = r.latency.iter().map(|l| ("all", l)).chain(
        r.latency_by_op
            .iter()
            .map(|ol| (ol.op.label(), &ol.latency)),
    );
    for (name, l) in rows {
        let _ = write!(
            o,
            "<tr><td class=l>{name}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        );
    }
}

/// The latency and throughput timelines and the latency histogram.
fn html_charts(o: &mut String, r: &Report) {
    o.push_str("</table><h2>Latency over time</h2>");
    o.push_str(&latency_chart(&r.timeline));
    if r.timeline_truncated {
        o.push_str("<p>(timeline sampling was truncated; histograms cover every request)</p>");
    }
    o.push_str("<h2>Throughput over time</h2>");
    o.push_str(&throughput_chart(&r.timeline));
    o.push_str("<h2>Latency histogram</h2>");
    o.push_str(&histogram_chart(r));
}

/// Response counts.
fn html_responses(o: &mut String, r: &Report) {
    o.push_str("<h2>Responses</h2><table><tr><th class=l>op</th><th>HTTP</th><th class=l>status</th><th>count</th></tr>");
    for c in &r.responses {
        let _ = write!(
            o,
            "<tr><td class=l>{}</td><td>{}</td><td class=l>{}</td><td>{}</td></tr>",
            c.op.label(),
            c.http,
            escape(&c.status),
            c.count
        );
    }
    o.push_str("</table>");
}

/// Each SKU: demand, supply, admissions and the final counters.
fn html_sales(o: &mut String, r: &Report) {
    if !r.skus.is_empty() {
        o.push_str("<h2>Sales</h2><table><tr><th class=l>sku</th><th>users</th><th>demand</th><th>on offer</th><th>admitted</th><th>first sold_out</th><th>remaining</th><th>reserved</th><th>paid</th></tr>");
        for s in &r.skus {
            let (rem, res, paid) = s
                .at_end
                .as_ref()
                .map_or((0, 0, 0), |f| (f.remaining, f.reserved, f.paid));
            let _ = write!(
                o,
                "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rem}</td><td>{res}</td><td>{paid}</td></tr>",
                escape(&s.sku),
                s.users,
                s.demand_units,
                s.before.remaining,
                s.admitted_units,
                s.first_sold_out_ms.map(|m| format!("{m:.1} ms")).unwrap_or_else(|| "-".into())
            );
        }
        o.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn latency_chart_draws_three_lines() {
        let pts: Vec<TimelinePoint> = (0..10)
            .map(|i| TimelinePoint {
                t_s: i as f64 * 0.1,
                rps: 1000.0,
                errors: 0,
                p50_ms: 0.5,
                p99_ms: 5.0,
                max_ms: 50.0,
            })
            .collect();
        let svg = latency_chart(&pts);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("100µs") && svg.contains("100ms"), "{svg}");
    }
}
