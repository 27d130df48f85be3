//! `bramble-node`: the node agent. Not built yet (see the node agent issue); this binary says so
//! instead of pretending to run pods.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bramble-node",
    version,
    about = "Bramble's node agent (not built yet)"
)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("bramble-node: the node agent is not built yet; a Bramble cluster has no nodes until it lands");
    std::process::ExitCode::from(2)
}
