//! One provider for the whole fleet: each location goes to the provider that
//! runs it. pgmaint-made servers (`local`) and adopted Patroni members live
//! side by side; the engine holds one [`Provider`] and never asks which.

use std::sync::Arc;
use std::time::Duration;

use super::patroni::{is_adopted, PatroniProvider};
use super::{Provider, ProviderError, ProviderResult, ServerAddress, StartWait, StopMode};
use crate::model::Plan;
use crate::pg::Server;

/// pgmaint's own servers, and adopted members when `[patroni]` is configured.
#[derive(Debug)]
pub struct Router {
    local: Arc<dyn Provider>,
    patroni: Option<PatroniProvider>,
}

impl Router {
    pub fn new(local: Arc<dyn Provider>, patroni: Option<PatroniProvider>) -> Router {
        Router { local, patroni }
    }

    fn of(&self, location: &str) -> ProviderResult<&dyn Provider> {
        if !is_adopted(location) {
            return Ok(self.local.as_ref());
        }
        match &self.patroni {
            Some(patroni) => Ok(patroni),
            None => Err(ProviderError::Os(format!("{location} is an adopted Patroni member, and the configuration has no [patroni] section"))),
        }
    }
}

#[async_trait::async_trait]
impl Provider for Router {
    fn new_location(&self, database: &str) -> String {
        self.local.new_location(database)
    }

    fn address(&self, location: &str) -> ServerAddress {
        match (is_adopted(location), &self.patroni) {
            (true, Some(patroni)) => patroni.address(location),
            _ => self.local.address(location),
        }
    }

    async fn provision_primary(&self, location: &str, plan: &Plan) -> ProviderResult<()> {
        self.of(location)?.provision_primary(location, plan).await
    }

    async fn build_replica(&self, location: &str, upstream: &str, slot: &str, plan: &Plan) -> ProviderResult<()> {
        self.of(location)?.build_replica(location, upstream, slot, plan).await
    }

    async fn is_running(&self, location: &str) -> ProviderResult<bool> {
        self.of(location)?.is_running(location).await
    }

    async fn start(&self, location: &str, wait: StartWait) -> ProviderResult<()> {
        self.of(location)?.start(location, wait).await
    }

    async fn stop(&self, location: &str, mode: StopMode) -> ProviderResult<()> {
        self.of(location)?.stop(location, mode).await
    }

    async fn restart(&self, location: &str) -> ProviderResult<()> {
        self.of(location)?.restart(location).await
    }

    async fn promote(&self, location: &str, session: &Server, timeout: Duration) -> ProviderResult<()> {
        self.of(location)?.promote(location, session, timeout).await
    }

    async fn retire(&self, location: &str) -> ProviderResult<()> {
        self.of(location)?.retire(location).await
    }

    async fn remove(&self, location: &str) -> ProviderResult<()> {
        self.of(location)?.remove(location).await
    }

    async fn installed_version_num(&self) -> ProviderResult<u32> {
        self.local.installed_version_num().await
    }

    fn client_program(&self, name: &str) -> tokio::process::Command {
        self.local.client_program(name)
    }
}
