//! `cvops demo`: the tour a newcomer takes first. A fresh platform, the digits sample set and the
//! bad files uploaded through the same path an S3 upload takes, the dataset's health, a detection
//! dataset's health beside it (the detect-digits set and a label fault of every kind), then a model
//! trained, registered and promoted as `cvops train --wait` does it, and its evaluation; then the
//! model served over HTTP, with the test digits sent through it; the monitor's report on that
//! traffic (OK), then on the digits inverted (DRIFT) and the retraining request it sent; last,
//! the reference detector trained on the dataset of boxes, registered, and asked for a few
//! pictures' boxes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use cvops_core::catalog::{class_names, label_records};
use cvops_core::key::DatasetName;
use cvops_core::registry;

use super::catalog::records;
use super::health::{self, DatasetHealth, DetectionHealth};
use super::monitor;
use super::predict;
use super::traffic;
use super::train;
use super::upload::{print_summary, upload};
use crate::http::HttpClient;
use cvops_platform::endpoint::LocalEndpoint;
use cvops_platform::{LocalPlatform, STORE_BUCKET, TRAINING_QUEUE};

/// Marks a data directory the demo made, so it only ever wipes its own.
const MARKER: &str = ".cvops-demo";
pub const DEFAULT_DEMO_DIR: &str = ".cvops-demo";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sample sets (digits/, detect-digits/ and bad/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../samplesets"))]
    pub samples: PathBuf,
    /// Training epochs [default: the trainer's, which reaches 97% on the digits].
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Other hyperparameters, as for `cvops train`.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = train::parse_assignment)]
    pub set: Vec<(String, f64)>,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    fresh_dir(data_dir)?;
    let digits = args.samples.join("digits");
    let bad = args.samples.join("bad").join("upload");
    let boxes = args.samples.join("detect-digits");
    for dir in [&digits, &bad, &boxes] {
        if !dir.is_dir() {
            bail!("sample set {} is missing; run the demo from a cvops checkout or pass --samples", dir.display());
        }
    }
    println!("cvops demo: a fresh local platform in {}", data_dir.display());
    let platform = LocalPlatform::open(data_dir)?;
    let dataset = DatasetName::parse("digits").expect("a valid name");

    println!("\n1. upload the digits sample set (MNIST, {}) as dataset `digits`", digits.display());
    print_summary(&upload(&platform, &dataset, &digits).await?, "digits");

    println!("\n2. upload the bad files ({}) into the same dataset", bad.display());
    print_summary(&upload(&platform, &dataset, &bad).await?, "digits");

    println!("\n3. the dataset's health\n");
    let records = records(platform.table.as_ref(), "digits").await?;
    health::print(&DatasetHealth::of("digits", &records));

    println!(
        "\n4. boxes too: the detect-digits sample set (YOLO, {}) and a label fault of every kind, as dataset `boxes`",
        boxes.display()
    );
    let boxes_dataset = DatasetName::parse("boxes").expect("a valid name");
    print_summary(&upload(&platform, &boxes_dataset, &boxes).await?, "boxes");
    print_summary(&upload(&platform, &boxes_dataset, &args.samples.join("bad").join("annotations")).await?, "boxes");
    println!();
    let table = platform.table.as_ref();
    health::print_detection(&DetectionHealth::of(
        "boxes",
        &super::catalog::records(table, "boxes").await?,
        &label_records(table, "boxes").await?,
        class_names(table, "boxes").await?.as_ref(),
    ));

    println!("\n5. train a model on `digits`: a request through the training queue, a snapshot, a run, a job");
    let train = train::Args {
        dataset: "digits".into(),
        model: None,
        epochs: args.epochs,
        set: args.set.clone(),
        snapshot: None,
        wait: true,
    };
    let mut request = train.request();
    request.reason = Some("demo".into());
    let run = train::submit(&platform, &request).await?;
    let versions = train::wait(&platform, &run).await?;

    println!("\n6. register-model verified the model, evaluated it on the snapshot's test split, and versioned it\n");
    for version in &versions {
        train::print_version(version);
        if let Some(evaluation) = &version.evaluation {
            println!("\n{:>6} {:>9} {:>7} {:>7} {:>8}", "label", "precision", "recall", "f1", "support");
            for (label, m) in &evaluation.per_class {
                println!("{label:>6} {:>8.1}% {:>6.1}% {:>6.3} {:>8}", 100.0 * m.precision, 100.0 * m.recall, m.f1, m.support);
            }
            println!("\n{}", evaluation.confusion_table());
        }
    }

    println!(
        "\n7. serve the production model over HTTP (the router the infer Lambda runs) and send it the 1,000 val and test digits"
    );
    let endpoint = LocalEndpoint::new(&platform, None, Duration::from_secs(2))?;
    let feed = endpoint.feed.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("no local port to serve on")?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(endpoint.serve(listener, async {
        let _ = stopped.await;
    }));
    println!("  serving http://{address}");
    let client = HttpClient::new(format!("http://{address}"), None);
    // Images the model was not trained on; 1,000 of them, the monitor's smallest window it judges.
    let held_out: Vec<_> = traffic::labelled_images(&digits.join("val"))?
        .into_iter()
        .chain(traffic::labelled_images(&digits.join("test"))?)
        .collect();
    // A short demo run can miss the promotion floor: then the newest version is served, pinned.
    let pinned = match registry::production(platform.table.as_ref(), "digits").await? {
        Some(_) => None,
        None => {
            let newest = versions.iter().map(|v| v.version).max().context("the run registered no version")?;
            println!("  (no production version: the requests pin v{newest} with ?version={newest})");
            Some(newest)
        }
    };
    traffic::send(&client, "digits", pinned, &held_out, Ok).await?.print("the val and test digits");

    println!("\n8. the monitor: that traffic against the baseline of the snapshot the model was trained on\n");
    monitor_now(&platform, &feed).await?;

    println!("\n9. a shifted stream: the same digits inverted (white paper, dark ink), as a new scanner might send them\n");
    traffic::send(&client, "digits", pinned, &held_out, invert).await?.print("the inverted digits");
    println!();
    monitor_now(&platform, &feed).await?;
    let _ = stop.send(());
    server.await.context("the endpoint stopped unexpectedly")??;
    let retraining_waits = platform.queue.depth(TRAINING_QUEUE)? > 0;

    println!("\n10. train the reference detector on `boxes` (about 9 minutes on 2 cores at the defaults) and ask it for boxes");
    let train =
        train::Args { dataset: "boxes".into(), model: None, epochs: args.epochs, set: args.set, snapshot: None, wait: true };
    let mut request = train.request();
    request.reason = Some("demo".into());
    let run = train::submit(&platform, &request).await?;
    let detectors = train::wait(&platform, &run).await?;
    println!();
    for version in &detectors {
        train::print_version(version);
    }
    let newest = detectors.iter().map(|v| v.version).max().context("the run registered no detector")?;
    let version = match registry::production(platform.table.as_ref(), "boxes").await? {
        Some(_) => None,
        None => Some(newest),
    };
    let mut pictures: Vec<_> = std::fs::read_dir(boxes.join("images").join("test"))?.flatten().map(|e| e.path()).collect();
    pictures.sort();
    pictures.truncate(3);
    println!();
    let detected = predict::Args {
        paths: pictures,
        model: "boxes".into(),
        version,
        top_k: None,
        score_threshold: None,
        iou_threshold: None,
        max_detections: None,
        json: false,
    };
    predict::run(data_dir, detected).await?;

    if retraining_waits {
        println!(
            "\n  The retraining request waits on the training queue: `cvops --data-dir {} up` dispatches it, trains,\n  registers, and promotes the new version if it passes the gate.",
            data_dir.display()
        );
    }

    let dir = data_dir.display();
    println!("\nNext:");
    println!("  cvops --data-dir {dir} models                                       # versions, stage, accuracy, lineage");
    println!("  cvops --data-dir {dir} runs");
    println!(
        "  cvops --data-dir {dir} predict samplesets/detect-digits/images/test --model boxes --json   # boxes as JSON lines"
    );
    println!("  cvops --data-dir {dir} monitor                                      # the latest drift report, run now");
    println!(
        "  cvops --data-dir {dir} serve --no-auth                              # then POST an image to /v1/models/digits/predict"
    );
    println!(
        "  cvops --data-dir {dir} train --dataset digits --epochs 5 --wait     # another run; promoted only if it is as good"
    );
    println!("  cvops --data-dir {dir} images --dataset digits --status rejected    # each rejection and what to do");
    println!("  cvops --data-dir {dir} images --dataset digits --status duplicate");
    println!(
        "  ls {}/buckets/{STORE_BUCKET}/quarantine                              # the rejected files, kept with a .reason.json",
        dir
    );
    println!("  cvops validate --json path/to/*.jpg                                  # check files before uploading");
    Ok(ExitCode::SUCCESS)
}

/// What the schedule would do now: the endpoint's pending counters written, the monitor run on
/// `digits`, its report printed.
async fn monitor_now(platform: &LocalPlatform, feed: &cvops_infer::Feed) -> anyhow::Result<()> {
    feed.flush().await.context("writing the monitoring counters")?;
    for report in platform.monitor.run(Some("digits")).await? {
        monitor::print_report(&report);
    }
    Ok(())
}

/// The image with its grey levels inverted, as PNG.
fn invert(png: bytes::Bytes) -> anyhow::Result<bytes::Bytes> {
    let mut grey = image::load_from_memory(&png).context("a sample image does not decode")?.to_luma8();
    image::imageops::invert(&mut grey);
    let mut out = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out.into())
}

/// Empties a directory the demo made before, or creates one; refuses anything else.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} already holds data the demo did not make; pass --data-dir with a new folder, for example --data-dir {DEFAULT_DEMO_DIR}",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by `cvops demo`; the next demo run wipes this folder\n")?;
    Ok(())
}
