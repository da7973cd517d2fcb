//! Changing a database's plan or infrastructure: `upgrade`,
//! and the follower switchover's `databases unfollow` and `databases promote`.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use pgmaint::api::{Client, Fate, PromoteDatabase, UpgradeDatabase};
use pgmaint::model::Plan;
use pgmaint::schedule;

use super::control::{call, info_block, print_json, run_report, Connection};
use super::{Failure, Outcome};

/// How often `upgrade` asks for progress while an essential copy runs.
const PROGRESS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    pub name: String,
    /// The new plan, e.g. standard-4.
    pub plan: String,
    /// Deadline of the plan-change maintenance (standard tier and up): a
    /// timestamp, or a duration from now such as 3d (default 7d).
    #[arg(long, value_name = "WHEN")]
    pub required_by: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct UnfollowArgs {
    /// The follower.
    pub name: String,
    /// The database's name or an app using it; asked for on a terminal when absent.
    #[arg(long, value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The database that becomes the app's DATABASE_URL.
    pub name: String,
    #[arg(long)]
    pub app: String,
    /// Repoint the previous primary's followers that can follow NAME.
    #[arg(long)]
    pub repoint_followers: bool,
    #[command(flatten)]
    pub connection: Connection,
}

pub fn upgrade(args: UpgradeArgs, client: &Client) -> Outcome {
    args.plan.parse::<Plan>().map_err(Failure::usage)?;
    let required_by = match &args.required_by {
        Some(text) => {
            let deadline = schedule::parse_deadline(text, chrono::Utc::now()).map_err(|e| Failure::usage(format!("--required-by {text:?}: {e}")))?;
            Some(schedule::format_timestamp(deadline))
        }
        None => None,
    };
    let request = UpgradeDatabase { plan: args.plan.clone(), required_by };
    if !args.connection.json {
        eprintln!("Changing {} to {}...", args.name, args.plan);
    }
    let client = client.clone();
    let watcher = client.clone();
    let show_progress = !args.connection.json;
    let name = args.name.clone();
    let answer = call(async move {
        // An essential upgrade answers when it is done: meanwhile show the progress `info` reports.
        let upgrade = client.upgrade(&name, &request);
        tokio::pin!(upgrade);
        let mut shown = String::new();
        loop {
            tokio::select! {
                answer = &mut upgrade => break answer,
                () = tokio::time::sleep(PROGRESS_POLL), if show_progress => {
                    let line = watcher.info(&name).await.ok().and_then(|info| info.maintenance).and_then(|m| m.progress_line);
                    if let Some(line) = line.filter(|line| *line != shown) {
                        eprintln!("{line}");
                        shown = line;
                    }
                }
            }
        }
    })?;
    if args.connection.json {
        return print_json(&answer);
    }
    match (&answer.run, &answer.maintenance) {
        (Some(run), _) => {
            println!("{} is now on {} (was {}): its data was copied while it refused writes", answer.database, answer.to_plan, answer.from_plan);
            print!("{}", run_report(&answer.database, run));
        }
        (None, Some(maintenance)) => {
            println!(
                "Plan change of {} from {} to {} required (maintenance #{}): a replacement on {} is being prepared, then it switches over in the window",
                answer.database,
                answer.from_plan,
                answer.to_plan,
                maintenance.id,
                answer.to_plan
            );
            println!("{}", maintenance.status_line);
            println!("Run it sooner with `pgmaint maintenance run {}`; follow it with `pgmaint info {}`.", answer.database, answer.database);
        }
        (None, None) => return Err(Failure::failed("unexpected answer from the daemon: neither a run nor a maintenance")),
    }
    Ok(())
}

pub fn unfollow(args: UnfollowArgs, client: &Client) -> Outcome {
    let confirm = match args.confirm {
        Some(confirm) => confirm,
        None => ask_confirmation(&args.name)?,
    };
    let info = call(client.unfollow(&args.name, &confirm))?;
    if args.connection.json {
        return print_json(&info);
    }
    println!("{} no longer follows its leader; it is writable", args.name);
    print!("{}", info_block(&info));
    Ok(())
}

/// Asks on a terminal for the confirmation; refuses when there is none.
fn ask_confirmation(name: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::failed(format!(
            "unfollowing {name} is destructive and needs confirmation: pass --confirm APP (an app using it, or {name})"
        )));
    }
    eprintln!("!    WARNING: {name} will stop following its leader and become a separate, writable database.");
    eprint!("!    To proceed, type the name of an app using it (or {name}): ");
    std::io::stderr().flush().map_err(Failure::failed)?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(Failure::failed)?;
    let answer = answer.trim().to_string();
    if answer.is_empty() {
        return Err(Failure::failed("confirmation not given; nothing changed"));
    }
    Ok(answer)
}

pub fn promote(args: PromoteArgs, client: &Client) -> Outcome {
    let request = PromoteDatabase { app: args.app.clone(), repoint_followers: args.repoint_followers };
    let promotion = call(client.promote(&args.name, &request))?;
    if args.connection.json {
        return print_json(&promotion);
    }
    let release = &promotion.release.info.summary.release;
    println!("Promoted {} to {} of {} ({release})", promotion.database, promotion.moved.join(" and "), promotion.app);
    if let Some(previous) = &promotion.previous {
        match &promotion.previous_attached_as {
            Some(key) => println!("{previous} stays attached to {} as {key}", promotion.app),
            None => println!("{previous} is no longer the DATABASE_URL of {}", promotion.app),
        }
        for key in &promotion.reattach {
            println!("{key} still points at {previous}: re-attach it with `pgmaint apps attach {} {} --as {}`", promotion.app, promotion.database, key.trim_end_matches("_URL"));
        }
    }
    for follower in &promotion.followers {
        let previous = promotion.previous.as_deref().unwrap_or("the previous primary");
        match follower.fate {
            Fate::NeedsRecreation => println!(
                "Follower {} still follows {previous}: re-create it with `pgmaint databases create NAME --follow {}`, or pass --repoint-followers",
                follower.name, promotion.database
            ),
            Fate::Repointed => println!("Follower {}: repointed, it follows {}", follower.name, promotion.database),
            Fate::NotRepointed => println!(
                "Follower {}: {}; it still follows {previous}: re-create it with `pgmaint databases create NAME --follow {}`",
                follower.name, follower.outcome, promotion.database
            ),
        }
    }
    if let Some(error) = &promotion.release.restart_error {
        eprintln!("warning: the release was recorded but not applied: {error}");
    }
    Ok(())
}
