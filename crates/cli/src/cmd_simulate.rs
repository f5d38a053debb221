//! `atm simulate`: how ATM's cost grows with accounts and devices.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use atm_engine::Propagation;
use atm_sim::plot::{self, PlotPoint};
use atm_sim::simulate::{self, RunStats, Setup};
use clap::{Args, ValueEnum};
use serde_json::json;

/// Which rule sets to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The project's complete propagation.
    Complete,
    /// Literal XEP-0450 rules.
    Xep,
    /// Both, side by side.
    Both,
}

/// Arguments of `atm simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of accounts; a comma-separated list gives one configuration per value.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    accounts: Vec<usize>,
    /// Devices per account: one value for every account, or one value per
    /// account (e.g. `--accounts 2 --devices 3,2`).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    devices: Vec<usize>,
    /// Seed of the random choices (runs are reproducible).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs per configuration, each with its own random order.
    #[arg(long, default_value_t = 10)]
    runs: u64,
    /// Chance (0 to 1) that an endpoint is offline at a step.
    #[arg(long, default_value_t = 0.0)]
    offline: f64,
    /// Rule set.
    #[arg(long, value_enum, default_value = "complete")]
    propagation: Which,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw the picture (runs both rule sets) to this SVG file.
    #[arg(long)]
    svg: Option<String>,
    /// Also measure the trust messages one new device causes, per configuration.
    #[arg(long)]
    new_device: bool,
}

/// Means over the runs of one configuration and rule set.
#[derive(Debug, Clone)]
struct Summary {
    setup: Setup,
    runs: u64,
    converged: u64,
    manual: f64,
    automatic: f64,
    share: f64,
    messages: f64,
    deliveries: f64,
    bytes: f64,
    postponed_peak: f64,
    wall: Duration,
    wall_max: Duration,
    new_device_messages: Option<u64>,
}

fn summarize(setup: &Setup, runs: &[RunStats]) -> Summary {
    let n = runs.len().max(1) as f64;
    let mean = |f: fn(&RunStats) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let total_wall: Duration = runs.iter().map(|r| r.wall).sum();
    Summary {
        setup: setup.clone(),
        runs: runs.len() as u64,
        converged: runs.iter().filter(|r| r.converged()).count() as u64,
        manual: mean(|r| r.manual_authentications as f64),
        automatic: mean(|r| r.automatic_authentications as f64),
        share: mean(RunStats::mesh_share),
        messages: mean(|r| r.trust_messages as f64),
        deliveries: mean(|r| r.deliveries as f64),
        bytes: mean(|r| r.xml_bytes as f64),
        postponed_peak: mean(|r| r.postponed_peak as f64),
        wall: total_wall / runs.len().max(1) as u32,
        wall_max: runs.iter().map(|r| r.wall).max().unwrap_or_default(),
        new_device_messages: None,
    }
}

fn setups(args: &SimulateArgs) -> Result<Vec<Vec<usize>>> {
    if args.accounts.is_empty() || args.devices.is_empty() {
        bail!("--accounts and --devices need at least one value");
    }
    if args.accounts.contains(&0) || args.devices.contains(&0) {
        bail!("--accounts and --devices must be at least 1");
    }
    if args.devices.len() == 1 {
        return Ok(args
            .accounts
            .iter()
            .map(|&k| vec![args.devices[0]; k])
            .collect());
    }
    match args.accounts[..] {
        [k] if k == args.devices.len() => Ok(vec![args.devices.clone()]),
        _ => bail!(
            "--devices lists {} counts: give one count, or one per account with a single --accounts {}",
            args.devices.len(),
            args.devices.len()
        ),
    }
}

/// Runs `atm simulate`.
pub fn run(args: SimulateArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.offline) {
        bail!("--offline must be in [0, 1), got {}", args.offline);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let which: Vec<Propagation> = match (args.propagation, args.svg.is_some()) {
        (Which::Both, _) | (_, true) => vec![Propagation::Complete, Propagation::Xep],
        (Which::Complete, false) => vec![Propagation::Complete],
        (Which::Xep, false) => vec![Propagation::Xep],
    };
    let configurations = setups(&args)?;
    let total = configurations.len() as u64 * which.len() as u64 * args.runs;
    let progress = indicatif::ProgressBar::new(total);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} ({msg})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut summaries = Vec::new();
    for devices in &configurations {
        for &propagation in &which {
            let setup = Setup {
                devices: devices.clone(),
                propagation,
                offline: args.offline,
            };
            progress.set_message(format!(
                "{} endpoints, {}",
                setup.endpoints(),
                propagation.as_str()
            ));
            let mut runs = Vec::new();
            for r in 0..args.runs {
                let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(r);
                runs.push(simulate::run(&setup, seed).context("simulation failed")?);
                progress.inc(1);
            }
            let mut summary = summarize(&setup, &runs);
            if args.new_device && propagation == Propagation::Complete {
                let (messages, _) = simulate::new_device_cost(&setup, args.seed)?;
                summary.new_device_messages = Some(messages);
            }
            summaries.push(summary);
        }
    }
    progress.finish_and_clear();
    let exponent = if args.new_device {
        let points: Vec<(f64, f64)> = summaries
            .iter()
            .filter_map(|s| Some((s.setup.endpoints() as f64, s.new_device_messages? as f64)))
            .collect();
        simulate::power_law_exponent(&points)
    } else {
        None
    };
    if let Some(file) = &args.svg {
        let picture = plot::svg(&plot_points(&summaries), &devices_label(&args));
        std::fs::write(file, picture).with_context(|| format!("writing {file}"))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&args, &summaries, exponent))?
        );
    } else {
        print!("{}", table(&summaries, exponent));
        if let Some(file) = &args.svg {
            println!("picture written to {file}");
        }
    }
    Ok(())
}

fn devices_label(args: &SimulateArgs) -> String {
    match args.devices[..] {
        [d] => format!("{d} devices per account"),
        _ => format!("devices per account {:?}", args.devices),
    }
}

fn plot_points(summaries: &[Summary]) -> Vec<PlotPoint> {
    let mut points = Vec::new();
    for c in summaries
        .iter()
        .filter(|s| s.setup.propagation == Propagation::Complete)
    {
        let Some(x) = summaries.iter().find(|s| {
            s.setup.propagation == Propagation::Xep && s.setup.devices == c.setup.devices
        }) else {
            continue;
        };
        let n = c.setup.endpoints() as f64;
        let mesh = c.setup.mesh() as f64;
        points.push(PlotPoint {
            endpoints: c.setup.endpoints() as u64,
            accounts: c.setup.devices.len() as u64,
            without_atm: mesh,
            xep_manual: x.manual + mesh * (1.0 - x.share),
            complete_manual: c.manual + mesh * (1.0 - c.share),
            complete_share: c.share,
            xep_messages_per_endpoint: x.messages / n,
            complete_messages_per_endpoint: c.messages / n,
        });
    }
    points
}

fn table(summaries: &[Summary], exponent: Option<f64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>11} {:>8} {:>9} {:>10} {:>7} {:>9} {:>10} {:>11} {:>9} {:>10} {:>9}",
        "accounts",
        "endpoints",
        "propagation",
        "manual",
        "automatic",
        "mesh",
        "conv.",
        "messages",
        "deliveries",
        "xml bytes",
        "postponed",
        "wall",
        "new dev."
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:>8} {:>9} {:>11} {:>8.1} {:>9.1} {:>9.1}% {:>3}/{:<3} {:>9.1} {:>10.1} {:>11.0} {:>9.1} {:>10} {:>9}",
            s.setup.devices.len(),
            s.setup.endpoints(),
            s.setup.propagation.as_str(),
            s.manual,
            s.automatic,
            s.share * 100.0,
            s.converged,
            s.runs,
            s.messages,
            s.deliveries,
            s.bytes,
            s.postponed_peak,
            format!("{:.1?}", s.wall),
            s.new_device_messages.map_or("-".to_string(), |m| m.to_string()),
        );
    }
    let _ = writeln!(
        out,
        "means over the runs; manual/automatic: authentications; mesh: share of the n(n-1) authentications reached; \
         conv.: runs that reached all of them; postponed: most decisions stored at once"
    );
    if let Some(e) = exponent {
        let _ = writeln!(
            out,
            "trust messages caused by one new device ~ endpoints^{e:.2}"
        );
    }
    out
}

fn to_json(args: &SimulateArgs, summaries: &[Summary], exponent: Option<f64>) -> serde_json::Value {
    json!({
        "seed": args.seed,
        "runs": args.runs,
        "offline": args.offline,
        "configurations": summaries.iter().map(|s| json!({
            "accounts": s.setup.devices.len(),
            "devices": s.setup.devices,
            "endpoints": s.setup.endpoints(),
            "propagation": s.setup.propagation.as_str(),
            "mesh": s.setup.mesh(),
            "without_atm_manual": s.setup.mesh(),
            "minimal_manual": s.setup.minimal_manual(),
            "manual_authentications": s.manual,
            "automatic_authentications": s.automatic,
            "mesh_share": s.share,
            "converged_runs": s.converged,
            "trust_messages": s.messages,
            "deliveries": s.deliveries,
            "xml_bytes": s.bytes,
            "postponed_peak": s.postponed_peak,
            "wall_ms_mean": s.wall.as_secs_f64() * 1000.0,
            "wall_ms_max": s.wall_max.as_secs_f64() * 1000.0,
            "new_device_messages": s.new_device_messages,
        })).collect::<Vec<_>>(),
        "new_device_exponent": exponent,
    })
}
