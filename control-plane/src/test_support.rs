//! Fixtures shared by the unit tests: a config folder with a content file,
//! options pointing at temp dirs, and a service built on a real sled store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::options::Options;
use crate::service::{Service, Settings};
use crate::store::SledStore;

pub const SAMPLE_YAML: &str = r#"
backends:
  - name: web
    servers:
      - address: 127.0.0.1:8081
content_sources:
  - name: page
    file: pages/maintenance.html
  - name: hello
    inline: "hi"
rules:
  - name: maint
    match:
      path_prefix: /maintenance
    action:
      replace:
        source: page
  - name: api
    match:
      hosts: [api.example.com]
      path_prefix: /
    action:
      forward:
        backend: web
"#;

pub const PAGE: &str = "<h1>down for maintenance</h1>\n";

/// Writes `switchyard.yaml` (with `yaml`) and `pages/maintenance.html`
/// under `dir/conf`, and returns options with the sled dir at `dir/db`.
pub fn fixture(dir: &Path, yaml: &str) -> Options {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("pages")).expect("create conf dir");
    std::fs::write(conf.join("pages/maintenance.html"), PAGE).expect("write page");
    std::fs::write(conf.join("switchyard.yaml"), yaml).expect("write config");
    Options {
        config: conf.join("switchyard.yaml"),
        data_dir: dir.join("db"),
        content_root: None,
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        history_limit: 100,
        command_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// A service over a real sled store, as `prepare` would build it, with the
/// file loaded.
pub async fn prepared_service(options: &Options) -> Service {
    crate::server::ControlPlane::prepare(options)
        .await
        .expect("prepare")
        .service()
        .clone()
}

/// A service over an empty store, without loading the file.
pub fn empty_service(options: &Options) -> Service {
    std::fs::create_dir_all(&options.data_dir).expect("data dir");
    let store = SledStore::open(&options.data_dir).expect("open sled");
    Service::new(
        Arc::new(store),
        Settings {
            config_path: options.config.clone(),
            content_root: options.effective_content_root(),
            history_limit: options.history_limit,
            command_timeout: options.command_timeout,
        },
    )
    .expect("service")
}
