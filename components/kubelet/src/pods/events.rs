//! The reasons and messages of the worker's events and decided waits, in
//! upstream's words, so `kubectl describe pod` reads as it does there.

use k8s_openapi::api::core::v1::Pod;

/// `namespace/name`, as the worker's logs and messages name a pod.
pub fn name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// The wait for an image the node's store does not hold: no registry can
/// be reached, so `lab load image` is the way to bring one.
pub fn missing_image(image: &str, policy: Option<&str>) -> (String, String) {
    let tag_latest = !image.rsplit('/').next().unwrap_or(image).contains(':') || image.ends_with(":latest");
    let policy = policy.map(str::to_string).unwrap_or_else(|| if tag_latest { "Always".into() } else { "IfNotPresent".into() });
    if policy == "Never" {
        return ("ErrImageNeverPull".into(), format!("Container image {image:?} is not present with pull policy of Never"));
    }
    (
        "ImagePullBackOff".into(),
        format!("Back-off pulling image {image:?}: kubelab's nodes reach no registry; load it into the lab's nodes with `lab load image {image}`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_names_lab_load_image() {
        let (reason, message) = missing_image("nginx:1.27", Some("Never"));
        assert_eq!(reason, "ErrImageNeverPull");
        assert_eq!(message, "Container image \"nginx:1.27\" is not present with pull policy of Never");
        let (reason, message) = missing_image("nginx", None);
        assert_eq!(reason, "ImagePullBackOff");
        assert!(message.contains("lab load image nginx"), "{message}");
    }
}
