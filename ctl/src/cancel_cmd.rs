//! `zestctl cancel`: stops running pulls.

use std::path::Path;

use zest_proto::v1::CancelRequest;

use crate::daemon_client;

pub fn run(socket: &Path, target: String, repo_type: Option<String>) -> anyhow::Result<()> {
    let reply = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut client = daemon_client::connect(socket).await?;
            anyhow::Ok(
                client
                    .cancel(CancelRequest {
                        target: target.clone(),
                        repo_type: repo_type.unwrap_or_default(),
                    })
                    .await?
                    .into_inner(),
            )
        })?;
    if reply.pull_ids.is_empty() {
        anyhow::bail!("no running pull is {target:?} (see `zestctl status` for pull ids)");
    }
    for id in &reply.pull_ids {
        println!("cancelled pull {id} (verified data is kept; `zestctl pull` resumes it)");
    }
    Ok(())
}
