//! What a container's environment needs from the API: the ConfigMaps and
//! Secrets its `env` and `envFrom` name (the Services' variables are in
//! `service_env`).

use k8s_openapi::api::core::v1::Container;

use super::config::{ConfigError, EnvValues};
use super::volumes;

/// The ConfigMaps and Secrets a container's env names.
pub async fn env_values(client: &kube::Client, ns: &str, c: &Container) -> Result<EnvValues, ConfigError> {
    let mut wanted: Vec<(String, bool)> = vec![];
    for from in c.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            wanted.push((cm.name.clone(), false));
        }
        if let Some(s) = &from.secret_ref {
            wanted.push((s.name.clone(), true));
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                wanted.push((r.name.clone(), false));
            }
            if let Some(r) = &from.secret_key_ref {
                wanted.push((r.name.clone(), true));
            }
        }
    }
    let mut values = EnvValues::default();
    for (name, secret) in wanted {
        let map = if secret { &mut values.secrets } else { &mut values.config_maps };
        if map.contains_key(&name) {
            continue;
        }
        if let Some(v) = volumes::env_source(client, ns, &name, secret).await? {
            map.insert(name, v);
        }
    }
    Ok(values)
}
