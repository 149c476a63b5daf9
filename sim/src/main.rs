use clap::Parser;

/// glibc's malloc and free were 14% of a 10,000-node run's samples, most of them on the
/// serial thread, which frees what the planning threads allocated (2,000 × 10 GiB flash:
/// 87 s, 69 s with mimalloc, the same results).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let p = zest_sim::Params::parse();
    anyhow::ensure!(p.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(p.model_gib > 0.0, "--model-gib must be positive");
    anyhow::ensure!(
        p.origin_mbit > 0.0 && p.node_mbit > 0.0,
        "link rates must be positive"
    );
    anyhow::ensure!(
        p.unit_mib > 0 && p.xorb_mib >= p.unit_mib,
        "--unit-mib must be at least 1 and at most --xorb-mib"
    );
    anyhow::ensure!(p.tick_ms > 0.0, "--tick-ms must be positive");
    let r = zest_sim::simulate(&p);
    println!("{}", r.text());
    if p.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
