//! Self-contained HTML report pages with SVG charts drawn here: a [`Page`] of sections, tables
//! and [`Chart`]s, the chart primitives (bars with intervals, lines with bands, overlaid
//! histograms, an error stream with alarms), and the pages of an evaluation and of a drift
//! comparison. Charts take aggregates only and cap what they draw, so a page's size depends on
//! the number of slices, groups and columns, never on the rows behind them.

mod bars;
mod chart;
mod drift;
mod evaluation;
mod histogram;
mod lines;
mod page;
mod stream;

pub use bars::{MAX_BARS, bars_with_intervals};
pub use chart::Chart;
pub use drift::{MAX_DRIFT_CHARTS, drift_page, histogram_chart};
pub use evaluation::{MAX_CONFUSION_CLASSES, MAX_DIFFERING, evaluation_page};
pub use histogram::{Bins, MAX_BINS, overlaid_histograms};
pub use lines::{MAX_POINTS as MAX_LINE_POINTS, MAX_SERIES, lines};
pub use page::{MAX_TABLE_ROWS, Page, Table, escape};
pub use stream::{MAX_ALARMS, MAX_POINTS as MAX_STREAM_POINTS, stream};
