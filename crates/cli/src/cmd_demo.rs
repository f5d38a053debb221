//! `atm demo`: the seed walkthrough, explained.

use anyhow::{anyhow, Context, Result};
use atm_engine::Propagation;
use atm_sim::demo;
use clap::Args;

/// Arguments of `atm demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Also draw the five devices and their 20 authentications to this SVG file.
    #[arg(long)]
    svg: Option<String>,
    /// Print JSON instead of the story.
    #[arg(long)]
    json: bool,
}

/// Runs `atm demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    let complete = demo::play(Propagation::Complete).map_err(|e| anyhow!(e))?;
    let xep = demo::play(Propagation::Xep).map_err(|e| anyhow!(e))?;
    if let Some(file) = &args.svg {
        std::fs::write(file, demo::svg(&complete)).with_context(|| format!("writing {file}"))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&demo::json(&complete, &xep))?
        );
    } else {
        print!("{}", demo::text(&complete, &xep));
        if let Some(file) = &args.svg {
            println!("\npicture written to {file}");
        }
    }
    Ok(())
}
