//! Knowledge distillation through the real binaries: a teacher trained on digits, a small student
//! trained alone and the same student distilled from the teacher (named by job id, resolved by the
//! coordinator), on two data-parallel ranks, inside a search, and the teachers that are refused.

use serde_json::Value;
use shoal_tests::{
    Coordinator, accuracy, code, digits_mlp, job_file, run_job as run, shoal, start_worker, stderr, stdout,
};

fn teacher_job() -> String {
    digits_mlp("teacher", "[{ width = 256 }, { width = 128 }]", "epochs = 30\nseed = 1")
}

/// The student: one narrow hidden layer that sees a tenth of the training images.
fn student() -> String {
    digits_mlp("student", "[{ width = 16 }]", "steps = 300\nseed = 2")
        .replace("kind = \"digits\"", "kind = \"digits\"\ntrain_fraction = 0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distilled_student_beats_the_same_student_trained_alone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let _workers = [start_worker(dir.path(), &url, 1, "w-1")?, start_worker(dir.path(), &url, 1, "w-2")?];

    let teacher = run(&url, dir.path(), "teacher", &teacher_job())?;
    let teacher_id = teacher["job_id"].as_str().expect("id").to_owned();
    let alone = accuracy(&run(&url, dir.path(), "alone", &student())?);
    let distill = format!("{}\n[distill]\nteacher_job = \"{teacher_id}\"\ntemperature = 4.0\nalpha = 0.7\n", student());
    let distilled = run(&url, dir.path(), "distilled", &distill)?;
    assert!(
        accuracy(&distilled) >= alone + 0.02,
        "teacher {:.4}: the distilled student ({:.4}) should beat the student alone ({alone:.4}) by 2 points",
        accuracy(&teacher),
        accuracy(&distilled)
    );
    let resolved = &distilled["spec"]["distill"];
    assert_eq!(resolved["teacher"].as_str(), teacher["result"]["checkpoint"].as_str(), "{resolved}");
    assert_eq!(resolved["teacher_outputs"].as_i64(), Some(10), "{resolved}");

    // Two data-parallel ranks each run the teacher on their shard of every batch.
    let two = distill.replace("name = \"student\"", "name = \"student-2\"\n[parallelism]\ndata = 2");
    let two = accuracy(&run(&url, dir.path(), "distilled-2", &two)?);
    assert!(two >= alone, "two ranks distilled {two:.4}, one alone {alone:.4}");

    // A search looks for the best student of the teacher: every trial distills.
    let search = format!(
        "{distill}\n[search]\nstrategy = \"random\"\nmax_trials = 2\nmax_concurrent = 2\nseed = 1\n\
         arch = {{ min_depth = 1, max_depth = 1, widths = [8, 16], activations = [\"relu\"] }}\n"
    );
    let search = run(&url, dir.path(), "search", &search)?;
    let trials = shoal(&url, &["trials", search["job_id"].as_str().expect("id"), "--json"]);
    assert_eq!(code(&trials), 0, "{}", stderr(&trials));
    let trials: Value = serde_json::from_str(&stdout(&trials))?;
    let trials = trials["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 2, "{trials:#?}");
    for t in trials {
        let job = shoal(&url, &["status", t["job_id"].as_str().expect("trial job"), "--json"]);
        let job: Value = serde_json::from_str(&stdout(&job))?;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["spec"]["distill"]["teacher"], resolved["teacher"], "the trial distills from the teacher");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_that_do_not_fit_are_refused_with_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let _worker = start_worker(dir.path(), &url, 1, "w-1")?;
    let submit = |name: &str, text: &str| {
        let file = job_file(dir.path(), name, text);
        shoal(&url, &["submit", file.to_str().expect("utf-8 path")])
    };

    let unknown = submit("unknown", &format!("{}\n[distill]\nteacher_job = \"job-nope\"\n", student()));
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("distill.teacher_job: no job `job-nope`"), "{}", stderr(&unknown));

    let bad = submit("bad", &format!("{}\n[distill]\nteacher = \"nowhere\"\ntemperature = 0\n", student()));
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("distill.teacher: no checkpoint at"), "{}", stderr(&bad));

    // A three-class teacher cannot teach a ten-class student: refused before it is queued.
    let three = teacher_job()
        .replace("kind = \"digits\"", "kind = \"synthetic_classification\"\nsamples = 300\nfeatures = 64\nclasses = 3")
        .replace("epochs = 30", "epochs = 1");
    let three = run(&url, dir.path(), "three", &three)?;
    let checkpoint = three["result"]["checkpoint"].as_str().expect("checkpoint").to_owned();
    let wrong = submit("wrong", &format!("{}\n[distill]\nteacher = \"{checkpoint}\"\n", student()));
    assert_eq!(code(&wrong), 2, "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("distill.teacher: the teacher has 3 outputs but the student's dataset has 10 classes"),
        "{}",
        stderr(&wrong)
    );
    let zero = submit("zero", &format!("{}\n[distill]\nteacher = \"{checkpoint}\"\ntemperature = 0\n", student()));
    assert_eq!(code(&zero), 2, "{}", stderr(&zero));
    assert!(stderr(&zero).contains("distill.temperature: must be in (0, 100], got 0"), "{}", stderr(&zero));
    Ok(())
}
