//! From a request path to what it names, as upstream's request-info parser
//! reads it: discovery documents, or a resource with its namespace, name and
//! subresource.

use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    CoreVersions,
    Groups,
    Group(&'static str),
    Resources { group: &'static str, version: &'static str },
}

pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

pub enum Route {
    Discovery(Discovery),
    Resource(Target),
}

pub fn parse(path: &str) -> ApiResult<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match parts.as_slice() {
        ["api"] => return Ok(Route::Discovery(Discovery::CoreVersions)),
        ["apis"] => return Ok(Route::Discovery(Discovery::Groups)),
        ["apis", g] => {
            let g = resources::groups().into_iter().find(|x| x == g).ok_or_else(ApiError::no_route)?;
            return Ok(Route::Discovery(Discovery::Group(g)));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let Some(any) = resources::RESOURCES.iter().find(|r| r.group == group && r.version == version) else {
        return Err(ApiError::no_route());
    };
    if rest.is_empty() {
        return Ok(Route::Discovery(Discovery::Resources { group: any.group, version: any.version }));
    }
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `namespaces/<ns>/<resource>...` unless it is the namespace itself or
    // one of its own subresources.
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, next, ..] if !matches!(*next, "status" | "finalize") => (Some(ns), &rest[2..]),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    };
    let resource = resources::find(group, version, plural).ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::no_route());
    }
    if let Some(s) = sub {
        if !resource.subresources.contains(&s) {
            return Err(ApiError::no_route());
        }
    }
    Ok(Route::Resource(Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        watch_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
        match parse(path).ok().unwrap() {
            Route::Resource(t) => (t.resource.plural.to_string(), t.namespace, t.name, t.subresource),
            Route::Discovery(_) => panic!("{path} is discovery"),
        }
    }

    #[test]
    fn paths() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(target("/api/v1/pods"), ("pods".into(), None, None, None));
        assert_eq!(target("/api/v1/namespaces/default/pods/web"), ("pods".into(), s("default"), s("web"), None));
        assert_eq!(target("/api/v1/namespaces/default/pods/web/status"), ("pods".into(), s("default"), s("web"), s("status")));
        assert_eq!(target("/api/v1/namespaces/kube-system"), ("namespaces".into(), None, s("kube-system"), None));
        assert_eq!(target("/api/v1/namespaces/x/finalize"), ("namespaces".into(), None, s("x"), s("finalize")));
        assert_eq!(target("/apis/apps/v1/namespaces/a/deployments/d/scale"), ("deployments".into(), s("a"), s("d"), s("scale")));
        assert_eq!(target("/api/v1/nodes/n1"), ("nodes".into(), None, s("n1"), None));
        assert!(parse("/api/v1/namespaces/a/nodes").is_err());
        assert!(parse("/api/v1/pods/x/bogus").is_err());
        assert!(parse("/apis/nothing/v1/x").is_err());
        assert!(matches!(parse("/apis/apps/v1").ok().unwrap(), Route::Discovery(Discovery::Resources { group: "apps", .. })));
    }
}
