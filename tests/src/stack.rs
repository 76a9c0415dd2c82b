//! One control plane and one data plane serving a YAML config, in a
//! temporary folder that lives as long as the stack.

use std::path::PathBuf;
use std::time::Duration;

use crate::{ControlPlane, DataPlane};

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub cp: ControlPlane,
    pub dp: DataPlane,
}

impl Stack {
    /// Starts both planes on `yaml` and waits until the data plane is ready.
    pub async fn start(yaml: &str, ready_within: Duration) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("switchyard.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let cp = ControlPlane::start(dir.path(), &config);
        let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
        dp.wait_ready(ready_within).await;
        Stack {
            dir,
            config,
            cp,
            dp,
        }
    }
}
