//! Parquet data sets through the real binaries: the digits written as a name pattern of two
//! Parquet files (pixels as a fixed-size list column, labels as text, an id column left out)
//! train two data-parallel ranks to digits accuracy; a missing column fails the job naming the
//! file and the column; a pattern that matches nothing is refused at submit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use shoal_common::proto::{JobState, SubmitJobRequest};
use shoal_tests::{Coordinator, accuracy, code, job_file, run_job, shoal, start_worker, stderr, wait_terminal};

/// Rows `from..to` of the digits as one Parquet file.
fn write_digits(path: &Path, from: usize, to: usize) -> anyhow::Result<()> {
    let d = shoal_train::data::digits();
    let shoal_train::data::TargetData::Classes { labels, .. } = &d.targets else {
        anyhow::bail!("digits have classes")
    };
    let mut pixels = FixedSizeListBuilder::new(Float32Builder::new(), d.features as i32);
    for r in from..to {
        pixels.values().append_slice(&d.x[r * d.features..(r + 1) * d.features]);
        pixels.append(true);
    }
    let pixels = pixels.finish();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("pixels", pixels.data_type().clone(), false),
        Field::new("digit", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from((from as i64..to as i64).collect::<Vec<_>>())),
        Arc::new(pixels),
        Arc::new(StringArray::from((from..to).map(|r| format!("digit-{}", labels[r])).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

fn job(name: &str, pattern: &Path, features: &str) -> String {
    format!(
        "name = \"{name}\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 64 }}]\n[dataset]\nkind = \"parquet\"\n\
         path = \"{}\"\nlabel_column = \"digit\"\nfeature_columns = {features}\n\
         [optimizer]\nkind = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n[training]\nbatch_size = 32\nepochs = 20\nseed = 3\n\
         [parallelism]\ndata = 2\n",
        pattern.display()
    )
}

#[test]
fn two_ranks_learn_digits_from_parquet_files_and_bad_columns_fail_with_the_file_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    write_digits(&data.join("part-0.parquet"), 0, 900)?;
    write_digits(&data.join("part-1.parquet"), 900, 1797)?;
    let pattern = data.join("part-*.parquet");
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let _workers = [
        start_worker(dir.path(), &coordinator.url(), 1, "w-parquet-0")?,
        start_worker(dir.path(), &coordinator.url(), 1, "w-parquet-1")?,
    ];
    let status = run_job(&coordinator.url(), dir.path(), "parquet", &job("parquet", &pattern, "[\"pixels\"]"))?;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(accuracy(&status) > 0.9, "digits from Parquet: {status}");

    // A pattern that matches no file is refused before it reaches the coordinator.
    let none = job_file(dir.path(), "none", &job("none", &data.join("nothing-*.parquet"), "[\"pixels\"]"));
    let out = shoal(&coordinator.url(), &["submit", none.to_str().unwrap_or_default()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("dataset.path"), "{}", stderr(&out));

    // A column the files do not have fails the job, naming the file and the column.
    let spec = shoal_common::spec::parse_toml(&job("missing", &pattern, "[\"pixels\", \"brightness\"]"))?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut client = coordinator.client().await?;
        let id = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
        let job = wait_terminal(&mut client, &id, Duration::from_secs(60)).await?;
        assert_eq!(JobState::try_from(job.state)?, JobState::Failed, "{job:?}");
        assert!(
            job.reason.contains("part-0.parquet: has no column `brightness`") && job.reason.contains("dataset.path"),
            "{}",
            job.reason
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
