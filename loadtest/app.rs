//! Dispatch of the parsed command line, and writing results (table or
//! JSON on stdout, `.hgrm` files).

use std::path::Path;

use crate::cli::{Cli, Command, ConnArgs, Scenario};
use crate::error::{LoadError, Result};
use crate::report::Report;
use crate::scenario::{self, Outcome};

/// Runs what the command line asks for.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Scenario(sc) => run_scenario(&sc),
        Command::Compare(args) => crate::compare::run(&args),
        Command::IdleWorker(args) => crate::idle::child(&args),
    }
}

fn run_scenario(sc: &Scenario) -> Result<()> {
    let conn = sc.conn();
    match scenario::run(sc, &conn.host)? {
        Outcome::Run(r) => {
            write_hgrm(conn, sc.name(), &r)?;
            emit(conn.json, &*r, || r.table())
        }
        Outcome::Saturation(s) => {
            for step in &s.steps {
                write_hgrm(
                    conn,
                    &format!("{}-{}", sc.name(), step.rate.round()),
                    &step.report,
                )?;
            }
            emit(conn.json, &s, || s.table())
        }
        Outcome::Outage(o) => emit(conn.json, &o, || o.table()),
    }
}

/// Prints `value` as JSON or the table `table` renders.
pub fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| LoadError::Run(format!("cannot serialise the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table());
    }
    Ok(())
}

/// Writes the report's histogram to `--hgrm-dir/<name>.hgrm`, if asked.
pub fn write_hgrm(conn: &ConnArgs, name: &str, r: &Report) -> Result<()> {
    let (Some(dir), Some(h)) = (&conn.hgrm_dir, &r.histogram) else {
        return Ok(());
    };
    let path = crate::hgrm::write(dir, name, h).map_err(LoadError::io(format!(
        "writing {name}.hgrm in {}",
        dir.display()
    )))?;
    if !conn.json {
        eprintln!("wrote {}", Path::new(&path).display());
    }
    Ok(())
}
