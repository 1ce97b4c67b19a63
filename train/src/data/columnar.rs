//! Parquet and Arrow IPC data sets: one or many files (a folder, a name pattern), read with only
//! the columns the job needs. Features are numeric columns, or fixed-size lists of numbers (one
//! feature per element); the label column may hold numbers or strings, numbered as a CSV file's
//! are. Every file must have the first file's columns with the same types.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shoal_common::spec::{ColumnarFormat, Task};

use super::csv::targets_of;
use super::{Dataset, TargetData};
use crate::error::{Result, TrainError};

/// What to read from a columnar data set.
pub struct Columns<'a> {
    pub format: ColumnarFormat,
    pub label: &'a str,
    /// Empty: every numeric or fixed-size list column but the label.
    pub features: &'a [String],
    pub task: Task,
}

/// Loads every file `path` names. For classification, `classes` fixes the label names (the
/// training files', for validation data); returns the data set and the class names it used.
pub fn load(
    path: &Path,
    field: &str,
    columns: &Columns<'_>,
    classes: Option<&[String]>,
) -> Result<(Dataset, Option<Vec<String>>)> {
    let files = shoal_common::paths::data_files(path, columns.format.extensions())
        .map_err(|reason| TrainError::dataset(field, reason))?;
    let mut table = Table::default();
    let mut first: Option<(PathBuf, Vec<Field>)> = None;
    for file in &files {
        let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", file.display()));
        let (schema, batches) = read(file, columns, &bad)?;
        let fields = chosen(&schema, columns).map_err(&bad)?;
        match &first {
            None => first = Some((file.clone(), fields.clone())),
            Some((first_file, expected)) => same_columns(expected, &fields, first_file).map_err(&bad)?,
        }
        for batch in batches {
            let batch = batch.map_err(|e| bad(format!("cannot decode: {e}")))?;
            table.append(&batch, &fields, columns, table.rows).map_err(&bad)?;
        }
    }
    let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", path.display()));
    if table.rows == 0 {
        return Err(bad("has no rows".into()));
    }
    let (targets, names) = match (&table.labels, columns.task) {
        (Labels::Text(raw), task) => targets_of(raw, task, classes, 0, bad)?,
        (Labels::Values(values), _) => (TargetData::Values { values: values.clone(), width: 1 }, None),
    };
    Ok((Dataset { x: table.x, targets, rows: table.rows, features: table.features, image: None }, names))
}

type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>>;

/// A file's schema and its batches, with only the label and feature columns decoded.
fn read(file: &Path, columns: &Columns<'_>, bad: &dyn Fn(String) -> TrainError) -> Result<(SchemaRef, Batches)> {
    let handle = File::open(file).map_err(|e| bad(format!("cannot read: {e}")))?;
    match columns.format {
        ColumnarFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
                .map_err(|e| bad(format!("not a Parquet file: {e}")))?;
            let schema = builder.schema().clone();
            let wanted = projection(&schema, columns).map_err(bad)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
            let reader = builder.with_projection(mask).build().map_err(|e| bad(format!("cannot read: {e}")))?;
            Ok((project(&schema, &wanted), Box::new(reader)))
        }
        ColumnarFormat::ArrowIpc => {
            let reader = arrow_ipc::reader::FileReader::try_new(handle, None)
                .map_err(|e| bad(format!("not an Arrow IPC file: {e}")))?;
            let schema = reader.schema();
            let wanted = projection(&schema, columns).map_err(bad)?;
            let reader = arrow_ipc::reader::FileReader::try_new(
                File::open(file).map_err(|e| bad(format!("cannot read: {e}")))?,
                Some(wanted.clone()),
            )
            .map_err(|e| bad(format!("not an Arrow IPC file: {e}")))?;
            Ok((project(&schema, &wanted), Box::new(reader)))
        }
    }
}

/// The schema of the columns a projection keeps, in file order.
fn project(schema: &SchemaRef, indices: &[usize]) -> SchemaRef {
    std::sync::Arc::new(arrow_schema::Schema::new(
        indices.iter().map(|&i| schema.field(i).clone()).collect::<Vec<Field>>(),
    ))
}

/// Indices (in file order) of the label and feature columns.
fn projection(schema: &SchemaRef, columns: &Columns<'_>) -> std::result::Result<Vec<usize>, String> {
    let mut wanted: Vec<usize> = chosen(schema, columns)?
        .iter()
        .map(|f| schema.index_of(f.name()).map_err(|e| e.to_string()))
        .collect::<std::result::Result<_, _>>()?;
    wanted.sort_unstable();
    Ok(wanted)
}

/// The label column first, then the feature columns in the order features are laid out.
fn chosen(schema: &SchemaRef, columns: &Columns<'_>) -> std::result::Result<Vec<Field>, String> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let find = |name: &str| {
        schema
            .field_with_name(name)
            .cloned()
            .map_err(|_| format!("has no column `{name}` (columns: {})", names.join(", ")))
    };
    let mut fields = vec![find(columns.label)?];
    if columns.features.is_empty() {
        fields.extend(
            schema
                .fields()
                .iter()
                .filter(|f| f.name() != columns.label && width(f.data_type()).is_some())
                .map(|f| (**f).clone()),
        );
        if fields.len() == 1 {
            return Err(format!("has no numeric columns besides the label `{}`", columns.label));
        }
    } else {
        for name in columns.features {
            let f = find(name)?;
            if width(f.data_type()).is_none() {
                return Err(format!(
                    "column `{name}` is {}, not numbers or a fixed-size list of numbers",
                    f.data_type()
                ));
            }
            fields.push(f);
        }
    }
    Ok(fields)
}

/// Every file must have the first one's columns, with the same types.
fn same_columns(expected: &[Field], got: &[Field], first: &Path) -> std::result::Result<(), String> {
    let names = |fields: &[Field]| fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
    if expected.iter().map(Field::name).ne(got.iter().map(Field::name)) {
        return Err(format!("reads columns {} here but {} in {}", names(got), names(expected), first.display()));
    }
    for (e, g) in expected.iter().zip(got) {
        if e.data_type() != g.data_type() {
            return Err(format!(
                "column `{}` is {} here but {} in {}",
                e.name(),
                g.data_type(),
                e.data_type(),
                first.display()
            ));
        }
    }
    Ok(())
}

/// Features a column gives per row: 1 for a number, the length of a fixed-size list of numbers.
fn width(t: &DataType) -> Option<usize> {
    match t {
        t if t.is_numeric() => Some(1),
        DataType::FixedSizeList(item, n) if item.data_type().is_numeric() && *n > 0 => Some(*n as usize),
        _ => None,
    }
}

enum Labels {
    Text(Vec<String>),
    Values(Vec<f32>),
}

struct Table {
    x: Vec<f32>,
    rows: usize,
    features: usize,
    labels: Labels,
}

impl Default for Table {
    fn default() -> Self {
        Self { x: Vec::new(), rows: 0, features: 0, labels: Labels::Text(Vec::new()) }
    }
}

impl Table {
    /// Appends a batch's rows; `before` is how many rows came before it, for messages.
    fn append(
        &mut self,
        batch: &RecordBatch,
        fields: &[Field],
        columns: &Columns<'_>,
        before: usize,
    ) -> std::result::Result<(), String> {
        let column = |f: &Field| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| format!("column `{}` is missing from a batch", f.name()))
        };
        let rows = batch.num_rows();
        let label = column(&fields[0])?;
        no_nulls(&label, fields[0].name(), before)?;
        match (&mut self.labels, columns.task) {
            (Labels::Text(text), Task::Classification) => {
                let cast = arrow_cast::cast(&label, &DataType::Utf8).map_err(|e| format!("label column: {e}"))?;
                text.extend(cast.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_owned()));
            }
            (labels, Task::Regression) => {
                if let Labels::Text(t) = labels
                    && t.is_empty()
                {
                    *labels = Labels::Values(Vec::new());
                }
                let Labels::Values(values) = labels else { return Err("mixed label kinds".into()) };
                values.extend(floats(&label, fields[0].name())?.iter());
            }
            (Labels::Values(_), Task::Classification) => return Err("mixed label kinds".into()),
        }
        let mut per_column = Vec::new();
        let mut features = 0;
        for f in &fields[1..] {
            let array = column(f)?;
            no_nulls(&array, f.name(), before)?;
            let w = width(f.data_type()).unwrap_or(1);
            let values = match array.data_type() {
                DataType::FixedSizeList(..) => {
                    let list = array.as_fixed_size_list();
                    let inner = list.values().slice(list.offset() * w, rows * w);
                    no_nulls(&inner, f.name(), before)?;
                    floats(&inner, f.name())?
                }
                _ => floats(&array, f.name())?,
            };
            features += w;
            per_column.push((values, w));
        }
        self.features = features;
        self.x.reserve(rows * features);
        for r in 0..rows {
            for (values, w) in &per_column {
                self.x.extend_from_slice(&values[r * w..(r + 1) * w]);
            }
        }
        self.rows += rows;
        Ok(())
    }
}

/// A numeric array as f32 values.
fn floats(array: &ArrayRef, name: &str) -> std::result::Result<Vec<f32>, String> {
    let cast = arrow_cast::cast(array, &DataType::Float32).map_err(|e| format!("column `{name}`: {e}"))?;
    Ok(cast.as_primitive::<Float32Type>().values().to_vec())
}

fn no_nulls(array: &ArrayRef, name: &str, before: usize) -> std::result::Result<(), String> {
    match (0..array.len()).find(|&i| array.is_null(i)) {
        Some(i) => Err(format!("column `{name}` has no value in row {}", before + i + 1)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::Schema;
    use parquet::arrow::ArrowWriter;

    use super::*;

    fn batch(offset: i64, kind: &str) -> RecordBatch {
        let mut list = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        for i in 0..3 {
            list.values().append_value(i as f32);
            list.values().append_value(10.0 + i as f32);
            list.append(true);
        }
        let list = list.finish();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("a", DataType::Int64, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("pixels", list.data_type().clone(), false),
            Field::new("b", DataType::Float64, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["r0", "r1", "r2"])),
            Arc::new(Int64Array::from(vec![offset, offset + 1, offset + 2])),
            Arc::new(StringArray::from(vec![kind, "dog", kind])),
            Arc::new(list),
            Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5])),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).expect("batch")
    }

    fn write_parquet(path: &Path, batch: &RecordBatch) {
        let file = File::create(path).expect("create");
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        w.write(batch).expect("write");
        w.close().expect("close");
    }

    fn cols<'a>(format: ColumnarFormat, features: &'a [String]) -> Columns<'a> {
        Columns { format, label: "kind", features, task: Task::Classification }
    }

    #[test]
    fn a_folder_of_parquet_files_is_one_data_set_with_lists_as_features() {
        let dir = tempfile::tempdir().expect("dir");
        write_parquet(&dir.path().join("part-0.parquet"), &batch(0, "cat"));
        write_parquet(&dir.path().join("part-1.parquet"), &batch(100, "cat"));
        let (d, names) = load(dir.path(), "dataset.path", &cols(ColumnarFormat::Parquet, &[]), None).expect("load");
        assert_eq!(names.expect("classes"), ["cat", "dog"]);
        // `id` (text) is no feature; `a`, `pixels` (2 wide) and `b` are, in file order.
        assert_eq!((d.rows, d.features), (6, 4));
        assert_eq!(&d.x[..8], &[0.0, 0.0, 10.0, 0.5, 1.0, 1.0, 11.0, 1.5]);
        assert_eq!(d.x[4 * 3], 100.0, "the second file follows the first");
        assert_eq!(d.targets, TargetData::Classes { labels: vec![0, 1, 0, 0, 1, 0], classes: 2 });

        let chosen = ["b".to_owned(), "a".to_owned()];
        let (d, _) = load(&dir.path().join("part-0.*"), "dataset.path", &cols(ColumnarFormat::Parquet, &chosen), None)
            .expect("projected");
        assert_eq!((d.rows, d.features), (3, 2));
        assert_eq!(&d.x[..4], &[0.5, 0.0, 1.5, 1.0], "features in the order asked for");
    }

    #[test]
    fn arrow_ipc_files_read_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("d.arrow");
        let b = batch(0, "cat");
        let mut w =
            arrow_ipc::writer::FileWriter::try_new(File::create(&path).expect("create"), &b.schema()).expect("writer");
        w.write(&b).expect("write");
        w.finish().expect("finish");
        let (d, _) = load(&path, "dataset.path", &cols(ColumnarFormat::ArrowIpc, &[]), None).expect("load");
        assert_eq!((d.rows, d.features), (3, 4));
        assert_eq!(&d.x[..4], &[0.0, 0.0, 10.0, 0.5]);
    }

    #[test]
    fn missing_columns_wrong_types_and_changing_schemas_name_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        write_parquet(&dir.path().join("a.parquet"), &batch(0, "cat"));
        let missing = ["nope".to_owned()];
        let err =
            load(dir.path(), "dataset.path", &cols(ColumnarFormat::Parquet, &missing), None).expect_err("missing");
        assert!(err.to_string().contains("a.parquet: has no column `nope` (columns: id, a, kind, pixels, b)"), "{err}");
        let text = ["id".to_owned()];
        let err = load(dir.path(), "dataset.path", &cols(ColumnarFormat::Parquet, &text), None).expect_err("text");
        assert!(err.to_string().contains("column `id` is Utf8, not numbers"), "{err}");

        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", DataType::Float64, false),
                Field::new("kind", DataType::Utf8, false),
            ])),
            vec![Arc::new(Float64Array::from(vec![1.0])), Arc::new(StringArray::from(vec!["cat"]))],
        )
        .expect("batch");
        write_parquet(&dir.path().join("b.parquet"), &other);
        let a = ["a".to_owned()];
        let err = load(dir.path(), "dataset.path", &cols(ColumnarFormat::Parquet, &a), None).expect_err("schema");
        assert!(err.to_string().contains("b.parquet: column `a` is Float64 here but Int64 in"), "{err}");
        let err =
            load(dir.path(), "dataset.path", &cols(ColumnarFormat::Parquet, &[]), None).expect_err("fewer columns");
        assert!(err.to_string().contains("b.parquet: reads columns kind, a here but kind, a, pixels, b in"), "{err}");
        std::fs::write(dir.path().join("c.parquet"), "not parquet").expect("write");
        let err = load(&dir.path().join("c.parquet"), "dataset.path", &cols(ColumnarFormat::Parquet, &a), None)
            .expect_err("garbage");
        assert!(
            err.to_string().starts_with("dataset.path: ") && err.to_string().contains("not a Parquet file"),
            "{err}"
        );
    }
}
