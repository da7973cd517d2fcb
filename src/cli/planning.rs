//! `pgmaint window next`, `pgmaint plan` and `pgmaint bench planner` (being written).
use super::Outcome;

#[derive(clap::Args, Debug)]
pub struct WindowNextArgs {}
#[derive(clap::Args, Debug)]
pub struct PlanArgs {}
#[derive(clap::Args, Debug)]
pub struct BenchPlannerArgs {}

pub fn window_next(_args: WindowNextArgs) -> Outcome { Ok(()) }
pub fn plan(_args: PlanArgs) -> Outcome { Ok(()) }
pub fn bench_planner(_args: BenchPlannerArgs) -> Outcome { Ok(()) }
