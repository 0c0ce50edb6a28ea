//! The API client of a component, from upstream's flags.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `--kubeconfig` and `--master`, named and read as upstream's components
/// read them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientFlags {
    /// The kubeconfig with the apiserver's address and this component's
    /// credentials. Without it (and without --master), the in-cluster
    /// service-account configuration is used.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver's URL; overrides the kubeconfig's server.
    #[arg(long)]
    pub master: Option<String>,
}

impl ClientFlags {
    /// The client configuration these flags name.
    pub async fn config(&self) -> Result<kube::Config> {
        let mut config = match (&self.kubeconfig, &self.master) {
            (Some(path), _) => {
                let file = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading --kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &Default::default()).await.with_context(|| format!("--kubeconfig {}", path.display()))?
            }
            (None, Some(master)) => kube::Config::new(master.parse().with_context(|| format!("--master {master:?} is not a URL"))?),
            (None, None) => kube::Config::incluster().context("neither --kubeconfig nor --master is given, and this is not a pod")?,
        };
        if let Some(master) = &self.master {
            config.cluster_url = master.parse().with_context(|| format!("--master {master:?} is not a URL"))?;
        }
        Ok(config)
    }

    /// A client for these flags.
    pub async fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.config().await?).context("building the API client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn master_overrides_and_bad_values_are_named() {
        let flags = ClientFlags { kubeconfig: None, master: Some("https://10.0.0.1:6443".into()) };
        assert!(flags.config().await.unwrap().cluster_url.to_string().starts_with("https://10.0.0.1:6443"));
        let bad = ClientFlags { kubeconfig: None, master: Some("not a url".into()) };
        assert!(format!("{:#}", bad.config().await.unwrap_err()).contains("--master \"not a url\" is not a URL"));
        let missing = ClientFlags { kubeconfig: Some("/nonexistent/kubeconfig".into()), master: None };
        assert!(format!("{:#}", missing.config().await.unwrap_err()).contains("reading --kubeconfig /nonexistent/kubeconfig"));
    }
}
