//! A table read from a CSV file with a header, column by column: a column whose every cell is a
//! number is numeric, any other is categorical (its distinct values numbered in sorted order).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{AnalysisError, Result};

/// One column's cells.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Numeric(Vec<f64>),
    /// `codes[i]` indexes `levels`, which are sorted.
    Categorical {
        codes: Vec<u32>,
        levels: Vec<String>,
    },
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Column::Numeric(_))
    }

    /// A categorical column from text cells.
    pub fn categorical<S: AsRef<str>>(cells: &[S]) -> Self {
        let mut levels: Vec<String> = cells.iter().map(|c| c.as_ref().to_owned()).collect();
        levels.sort();
        levels.dedup();
        let codes =
            cells.iter().map(|c| levels.binary_search_by(|l| l.as_str().cmp(c.as_ref())).unwrap_or(0) as u32).collect();
        Column::Categorical { codes, levels }
    }

    /// The rows `rows` of this column.
    pub fn select(&self, rows: &[usize]) -> Column {
        match self {
            Column::Numeric(v) => Column::Numeric(rows.iter().map(|&r| v[r]).collect()),
            Column::Categorical { codes, levels } => {
                Column::Categorical { codes: rows.iter().map(|&r| codes[r]).collect(), levels: levels.clone() }
            }
        }
    }
}

/// Named columns of equal length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Frame {
    /// Reads a CSV file whose first row names the columns; `field` is the option that named the
    /// file, for errors.
    pub fn read_csv(path: &Path, field: &str) -> Result<Frame> {
        let bad = |reason: String| AnalysisError::File { field: field.into(), path: path.to_path_buf(), reason };
        let raw = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let frame = Self::parse(&raw, &bad, "")?;
        if frame.rows == 0 {
            return Err(bad("has no data rows".into()));
        }
        Ok(frame)
    }

    /// Reads shard `shard` of `shards` of a CSV file: the header and the rows that start in the
    /// shard's equal share of the file's bytes after it (rows must not span lines). Only those
    /// bytes are read; a shard may have no rows.
    pub fn read_csv_shard(path: &Path, field: &str, shard: usize, shards: usize) -> Result<Frame> {
        let bad = |reason: String| AnalysisError::File { field: field.into(), path: path.to_path_buf(), reason };
        let io = |e: std::io::Error| bad(format!("cannot read: {e}"));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = Vec::new();
        std::io::BufReader::new(&mut file).read_until(b'\n', &mut header).map_err(io)?;
        let body = header.len() as u64;
        let shards = shards.max(1) as u64;
        let cut = |k: u64| body + (len - body) * k / shards;
        let start = line_start(&mut file, cut(shard as u64), body).map_err(io)?;
        let end = line_start(&mut file, cut(shard as u64 + 1), body).map_err(io)?;
        let mut raw = header;
        if !raw.ends_with(b"\n") {
            raw.push(b'\n');
        }
        let at = raw.len();
        raw.resize(at + (end - start) as usize, 0);
        file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut raw[at..])).map_err(io)?;
        Self::parse(&raw, &bad, &format!(" of the rows from byte {start}"))
    }

    /// Parses CSV text whose first row names the columns; `whence` follows line numbers in errors.
    fn parse(raw: &[u8], bad: &dyn Fn(String) -> AnalysisError, whence: &str) -> Result<Frame> {
        let mut reader =
            csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(raw);
        let names: Vec<String> =
            reader.headers().map_err(|e| bad(format!("bad header: {e}")))?.iter().map(str::to_owned).collect();
        if names.is_empty() {
            return Err(bad("has no columns".into()));
        }
        let mut seen = names.clone();
        seen.sort();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("names column `{}` twice", w[0])));
        }
        // Every column starts numeric and turns to text at its first cell that is not a number.
        let mut numbers: Vec<Option<Vec<f64>>> = vec![Some(Vec::new()); names.len()];
        let mut text: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        let mut rows = 0;
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(bad(format!("after row {}{whence}: {e}", rows + 1))),
            }
            if record.iter().all(<[u8]>::is_empty) {
                continue;
            }
            let line = record.position().map_or(rows + 2, |p| p.line() as usize);
            if record.len() != names.len() {
                return Err(bad(format!(
                    "line {line}{whence} has {} columns, the header {}",
                    record.len(),
                    names.len()
                )));
            }
            for (j, cell) in record.iter().enumerate() {
                let cell = std::str::from_utf8(cell).map_err(|_| bad(format!("line {line}{whence}: not UTF-8")))?;
                match &mut numbers[j] {
                    Some(v) => match cell.parse::<f64>() {
                        Ok(x) => v.push(x),
                        Err(_) => {
                            text[j] = v.iter().map(|x| x.to_string()).collect();
                            text[j].push(cell.to_owned());
                            numbers[j] = None;
                        }
                    },
                    None => text[j].push(cell.to_owned()),
                }
            }
            rows += 1;
        }
        let columns = numbers
            .into_iter()
            .zip(text)
            .map(|(n, t)| match n {
                Some(v) => Column::Numeric(v),
                None => Column::categorical(&t),
            })
            .collect();
        Ok(Frame { names, columns, rows })
    }

    /// The column named `name`; `field` is the option that named it, for the error.
    pub fn column(&self, name: &str, field: &str) -> Result<&Column> {
        self.names.iter().position(|n| n == name).map(|i| &self.columns[i]).ok_or_else(|| {
            AnalysisError::invalid(
                field,
                format!("the data has no column `{name}` (its columns: {})", self.names.join(", ")),
            )
        })
    }

    /// The numeric column `name`, or an error naming it.
    pub fn numeric(&self, name: &str, field: &str) -> Result<&[f64]> {
        match self.column(name, field)? {
            Column::Numeric(v) => Ok(v),
            Column::Categorical { levels, .. } => Err(AnalysisError::column(
                name,
                format!("must hold numbers, but has the value `{}`", levels.first().map_or("", String::as_str)),
            )),
        }
    }
}

/// Where the first line that starts at or after `pos` starts (the file's length if none does);
/// lines start after a newline, or at `body`, the first byte after the header.
fn line_start(file: &mut std::fs::File, pos: u64, body: u64) -> Result<u64, std::io::Error> {
    if pos <= body {
        return Ok(body);
    }
    file.seek(SeekFrom::Start(pos - 1))?;
    let mut skipped = Vec::new();
    let n = std::io::BufReader::new(&mut *file).read_until(b'\n', &mut skipped)?;
    Ok(pos - 1 + n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_numeric_until_a_cell_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,g,c\n1,x,2\n2.5,y,n/a\n\n3,x,4\n").expect("write");
        let f = Frame::read_csv(&path, "--data").expect("read");
        assert_eq!(f.rows, 3);
        assert_eq!(f.columns[0], Column::Numeric(vec![1.0, 2.5, 3.0]));
        assert_eq!(f.columns[1], Column::Categorical { codes: vec![0, 1, 0], levels: vec!["x".into(), "y".into()] });
        // A column that turns to text keeps its earlier cells as text.
        assert_eq!(
            f.columns[2],
            Column::Categorical { codes: vec![0, 2, 1], levels: vec!["2".into(), "4".into(), "n/a".into()] }
        );
        let err = f.numeric("c", "--data").expect_err("text column");
        assert!(err.to_string().contains("column `c`: must hold numbers"), "{err}");
        let err = f.column("zz", "--slice-by").expect_err("missing column");
        assert!(err.to_string().starts_with("--slice-by: the data has no column `zz`"), "{err}");
        std::fs::write(&path, "a,b\n1,2\n3\n").expect("write");
        let err = Frame::read_csv(&path, "--data").expect_err("ragged");
        assert!(err.to_string().contains("line 3 has 1 columns"), "{err}");
    }
}
