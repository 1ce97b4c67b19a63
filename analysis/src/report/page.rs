//! A report page: a title, sections with headings, paragraphs, tables and charts, rendered as one
//! self-contained HTML5 document (inline CSS, inline SVG, a small inline script and nothing
//! fetched). The script checks the charts in the browser and leaves its verdict on `<html>`:
//! `data-report="ok"` with `data-charts` (and `data-empty-charts`), or `data-report="error"` with
//! the message in `data-error`, so a headless browser's DOM tells whether the page worked.

use std::fmt::Write;

use super::chart::Chart;

/// The most rows a table shows; the rest are counted in a last row.
pub const MAX_TABLE_ROWS: usize = 200;

/// Registered before anything else runs, so any later script error marks the page.
const ON_ERROR: &str = include_str!("on_error.js");
/// Checks every chart once the document is parsed and wires the legend toggles.
const CHECK: &str = include_str!("check.js");
const STYLE: &str = include_str!("page.css");

/// `text` with the characters HTML gives meaning escaped (`& < > " '`), for text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a cell reads as a number (`0.5`, `-3 [-4, -2]`, `n/a`, `—`), to align it right.
fn numeric(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    digits.starts_with(|c: char| c.is_ascii_digit()) || cell == "n/a" || cell == "—"
}

/// A table with a header row; marked rows are shown emphasized (a drifted column, a differing
/// slice). Past [`MAX_TABLE_ROWS`] rows are counted, not kept.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<(Vec<String>, bool)>,
    left_out: usize,
}

impl Table {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table { header: header.iter().map(|h| h.as_ref().to_owned()).collect(), ..Table::default() }
    }

    /// Adds a row of cells.
    pub fn row(self, cells: Vec<String>) -> Self {
        self.row_marked(cells, false)
    }

    /// Adds a row of cells, emphasized when `marked`.
    pub fn row_marked(mut self, cells: Vec<String>, marked: bool) -> Self {
        if self.rows.len() < MAX_TABLE_ROWS {
            self.rows.push((cells, marked));
        } else {
            self.left_out += 1;
        }
        self
    }

    /// The rows kept, without the header.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn render(&self, out: &mut String) {
        out.push_str("<table>\n<thead><tr>");
        for h in &self.header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (cells, marked) in &self.rows {
            out.push_str(if *marked { r#"<tr class="marked">"# } else { "<tr>" });
            for c in cells {
                let class = if numeric(c) { r#" class="n""# } else { "" };
                let _ = write!(out, "<td{class}>{}</td>", escape(c));
            }
            out.push_str("</tr>\n");
        }
        if self.left_out > 0 {
            let _ = writeln!(
                out,
                r#"<tr class="left-out"><td colspan="{}">{} more rows not shown</td></tr>"#,
                self.header.len().max(1),
                self.left_out
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
}

/// One block of a page, in order.
#[derive(Clone, Debug)]
enum Block {
    Section(String),
    Paragraph(String),
    Pairs(Vec<(String, String)>),
    Table(Table),
    Chart(Chart),
}

/// A report page being built; [`Page::render`] makes the document.
#[derive(Clone, Debug)]
pub struct Page {
    title: String,
    blocks: Vec<Block>,
}

impl Page {
    pub fn new(title: impl Into<String>) -> Self {
        Page { title: title.into(), blocks: Vec::new() }
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// Starts a section headed `heading`; what follows belongs to it until the next section.
    pub fn section(&mut self, heading: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Section(heading.into()));
        self
    }

    pub fn paragraph(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.into()));
        self
    }

    /// A two-column table of names and values.
    pub fn pairs(&mut self, pairs: Vec<(String, String)>) -> &mut Self {
        self.blocks.push(Block::Pairs(pairs));
        self
    }

    pub fn table(&mut self, table: Table) -> &mut Self {
        self.blocks.push(Block::Table(table));
        self
    }

    pub fn chart(&mut self, chart: Chart) -> &mut Self {
        self.blocks.push(Block::Chart(chart));
        self
    }

    /// The charts on the page, in order.
    pub fn charts(&self) -> impl Iterator<Item = &Chart> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Chart(c) => Some(c),
            _ => None,
        })
    }

    /// The document: one HTML5 page needing nothing else.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let title = escape(&self.title);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
             content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<script>\n{ON_ERROR}</script>\n\
             <style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n"
        );
        let mut open = false;
        for block in &self.blocks {
            match block {
                Block::Section(heading) => {
                    if open {
                        out.push_str("</section>\n");
                    }
                    open = true;
                    let _ = writeln!(out, "<section>\n<h2>{}</h2>", escape(heading));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", escape(text));
                }
                Block::Pairs(pairs) => {
                    out.push_str("<table class=\"pairs\">\n");
                    for (k, v) in pairs {
                        let _ = writeln!(out, "<tr><th scope=\"row\">{}</th><td>{}</td></tr>", escape(k), escape(v));
                    }
                    out.push_str("</table>\n");
                }
                Block::Table(table) => table.render(&mut out),
                Block::Chart(chart) => {
                    out.push_str("<figure>\n");
                    out.push_str(chart.svg());
                    out.push('\n');
                    for note in chart.notes() {
                        let _ = writeln!(out, "<figcaption>{}</figcaption>", escape(note));
                    }
                    out.push_str("</figure>\n");
                }
            }
        }
        if open {
            out.push_str("</section>\n");
        }
        let _ = write!(out, "</main>\n<script>\n{CHECK}</script>\n</body>\n</html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::bars_with_intervals;

    #[test]
    fn escape_neutralizes_markup_and_quotes() {
        assert_eq!(escape("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape(r#"a & b "c""#), "a &amp; b &quot;c&quot;");
        assert_eq!(escape("plain – ünïcode"), "plain – ünïcode");
    }

    #[test]
    fn a_page_escapes_its_text_and_needs_nothing_outside() {
        let mut page = Page::new("A <b> & \"c\"");
        page.paragraph("before any section").section("<script>x</script>").paragraph("it's");
        page.pairs(vec![("k&".into(), "<v>".into())]);
        let mut table = Table::new(&["a", "b"]);
        for i in 0..MAX_TABLE_ROWS + 3 {
            table = table.row_marked(vec![i.to_string(), "<i>".into()], i == 0);
        }
        page.table(table);
        let labels = vec!["<x>".to_owned()];
        page.chart(bars_with_intervals("t'", &labels, &[0.5], &[0.4], &[0.6], &[true]).note("n & m"));
        let html = page.render();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>A &lt;b&gt; &amp; &quot;c&quot;</title>"));
        assert!(html.contains("<h2>&lt;script&gt;x&lt;/script&gt;</h2>"));
        assert!(html.contains("<p>it&#39;s</p>") && html.contains("<th scope=\"row\">k&amp;</th><td>&lt;v&gt;</td>"));
        assert!(html.contains("<td>&lt;i&gt;</td>") && !html.contains("<i>"));
        assert!(html.contains(r#"<tr class="marked"><td class="n">0</td><td>&lt;i&gt;</td>"#));
        assert!(html.contains("3 more rows not shown"));
        assert!(html.contains("<figcaption>n &amp; m</figcaption>"));
        // Only the page's own two scripts, no external resource.
        assert_eq!(html.matches("<script>").count(), 2);
        assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("http"));
        assert_eq!(html.matches("<section>").count(), html.matches("</section>").count());
        assert_eq!(page.charts().count(), 1);
    }
}
