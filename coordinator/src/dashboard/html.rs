//! The dashboard's HTML: the frame every page shares (navigation, styles, scripts, the banner
//! that shows script errors) and the small pieces pages are made of. Every value from a job or a
//! worker goes through [`escape`].

use std::fmt::Write;

use prost_types::Timestamp;
use shoal_common::proto::{Job, JobState};

/// Text made safe for HTML content and quoted attributes: the same escaping as the analysis pages.
pub use shoal_analysis::report::escape;

/// Which entry of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Jobs,
    Workers,
    None,
}

/// A whole page: `body` inside the shared frame. `data` becomes `data-*` attributes of `<body>`,
/// which the page's script reads (the job id, the page kind).
pub fn page(title: &str, nav: Nav, data: &[(&str, &str)], body: &str) -> String {
    let mut attrs = String::new();
    for (k, v) in data {
        let _ = write!(attrs, " data-{k}=\"{}\"", escape(v));
    }
    let link = |to: Nav, href: &str, label: &str| {
        let current = if to == nav { " aria-current=\"page\"" } else { "" };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Shoal</title><link rel=\"icon\" href=\"data:,\">\
         <script src=\"/static/errors.js\"></script>\
         <link rel=\"stylesheet\" href=\"/static/uPlot.min.css\">\
         <link rel=\"stylesheet\" href=\"/static/dashboard.css\"></head>\
         <body{attrs}><header><a class=\"brand\" href=\"/\">Shoal</a><nav>{jobs}{workers}</nav>\
         <span id=\"live\" class=\"muted\"></span></header>\
         <div id=\"script-error\" class=\"banner error\" hidden></div>\
         <main>{body}</main>\
         <script src=\"/static/uPlot.iife.min.js\"></script><script src=\"/static/dashboard.js\"></script>\
         </body></html>\n",
        title = escape(title),
        jobs = link(Nav::Jobs, "/", "Jobs"),
        workers = link(Nav::Workers, "/workers", "Workers"),
    )
}

/// A job state as a coloured label.
pub fn state_badge(state: JobState) -> String {
    format!("<span class=\"state {0}\">{0}</span>", state.label())
}

/// The cancel button of a queued or running job (the page script confirms and sends it); nothing
/// for a job that has ended.
pub fn cancel_button(job: &Job, label: &str) -> String {
    if job.state().is_terminal() {
        return String::new();
    }
    let name = job.spec.as_ref().map_or("", |s| s.name.as_str());
    format!(
        "<button type=\"button\" class=\"cancel\" data-job=\"{}\" data-name=\"{}\">{label}</button>",
        escape(&job.job_id),
        escape(name)
    )
}

/// A table: header cells, then rows of cells already in HTML.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(out, "<tr class=\"empty\"><td colspan=\"{}\">{}</td></tr>", headers.len(), escape(empty));
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Label/value pairs (values already in HTML).
pub fn facts(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (k, v) in pairs {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>");
    out
}

/// A timestamp as UTC text, with how long ago in a tooltip; "-" when absent.
pub fn time(ts: Option<&Timestamp>) -> String {
    let Some(ts) = ts.filter(|t| t.seconds > 0) else { return "-".into() };
    let ms = shoal_common::time::timestamp_to_ms(ts);
    let ago = duration(shoal_common::time::age(ts).as_secs_f64());
    format!("<time data-ms=\"{ms}\" title=\"{ago} ago\">{}</time>", utc(ms))
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Seconds as "42s", "3m 07s", "2h 05m".
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A number with at most four significant decimals, "-" when not finite.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let decimals = match v.abs() {
        a if a >= 1000.0 => 0,
        a if a >= 100.0 => 1,
        _ => 4,
    };
    let text = format!("{v:.decimals$}");
    if decimals == 0 {
        return text;
    }
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.to_owned() }
}

/// Bytes as GiB or MiB.
pub fn bytes(b: u64) -> String {
    let gib = b as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.1} GiB") } else { format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_jobs_cannot_open_tags_or_attributes() {
        assert_eq!(escape("<b onclick=\"x\">'&'</b>"), "&lt;b onclick=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;");
    }

    #[test]
    fn dates_durations_and_numbers_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_000_000_000), "2026-11-30 00:53:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(187.0), "3m 07s");
        assert_eq!(duration(7500.0), "2h 05m");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(365_547.458_8), "365547");
        assert_eq!(number(123.456), "123.5");
        assert_eq!(number(f64::NAN), "-");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }
}
