//! Fault injection: HTTP errors, latency, cut watch streams, controllers that never become
//! ready, exec sessions that hang. Probabilistic faults draw from a ChaCha8 generator seeded
//! per fault, so the same seed and the same request sequence give the same faults.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which requests a fault applies to. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    /// Kubernetes verbs (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...).
    pub verbs: Vec<String>,
    /// Resources as `plural`, `plural.group`, or `plural/subresource` (`*` for any).
    pub resources: Vec<String>,
    /// Namespace (exact).
    pub namespace: Option<String>,
}

impl Matcher {
    pub fn any() -> Self {
        Self::default()
    }
    pub fn verb(mut self, verb: &str) -> Self {
        self.verbs.push(verb.to_string());
        self
    }
    pub fn resource(mut self, resource: &str) -> Self {
        self.resources.push(resource.to_string());
        self
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }
    /// Whether a request matches. `group` is empty for the core group.
    pub fn matches(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
    ) -> bool {
        let verb_ok = self.verbs.is_empty() || self.verbs.iter().any(|v| v == "*" || v == verb);
        let with_sub = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        let resource_ok = self.resources.is_empty()
            || self.resources.iter().any(|r| {
                let (name, g) = match r.split_once('.') {
                    Some((n, g)) => (n, Some(g)),
                    None => (r.as_str(), None),
                };
                (name == "*" || name == with_sub || (subresource.is_empty() && name == resource))
                    && g.is_none_or(|g| g == group)
            });
        let ns_ok = self.namespace.as_deref().is_none_or(|n| n == namespace);
        verb_ok && resource_ok && ns_ok
    }
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer matching requests with `status` (500, 503, 429, ...) with `probability`.
    /// 429 and 503 carry `Retry-After: retry_after_seconds`. `times` limits how often it fires.
    Http {
        status: u16,
        matcher: Matcher,
        probability: f64,
        seed: u64,
        retry_after_seconds: Option<u64>,
        times: Option<u64>,
    },
    /// Extra latency before matching requests are handled.
    Latency { matcher: Matcher, delay: Duration },
    /// Close matching watch streams after `after_events` events.
    WatchCut {
        matcher: Matcher,
        after_events: usize,
    },
    /// The named controller never acts (part 1 has `crd-establishing`: CRDs never become Established).
    ControllerNeverReady { controller: String },
    /// Exec sessions in matching pods never finish (no output, no status).
    ExecHang {
        namespace: Option<String>,
        pod: Option<String>,
        container: Option<String>,
    },
}

impl Fault {
    /// An HTTP error fault that always fires on matching requests.
    pub fn http(status: u16, matcher: Matcher) -> Self {
        Fault::Http {
            status,
            matcher,
            probability: 1.0,
            seed: 0,
            retry_after_seconds: if matches!(status, 429 | 503) {
                Some(1)
            } else {
                None
            },
            times: None,
        }
    }

    /// Parse a `--fault` spec: `KIND:key=value,...`. Returns the fault and the cluster it is
    /// limited to (`cluster=NAME`), if any.
    ///
    /// - `http:status=503,verb=create,resource=configmaps,p=0.5,seed=7,retry-after=2,times=3`
    /// - `latency:ms=200,verb=get`
    /// - `watch-cut:resource=pods,after=3`
    /// - `controller-never-ready:name=crd-establishing`
    /// - `exec-hang:namespace=ns,pod=name,container=c`
    ///
    /// `verb` and `resource` take `|`-separated alternatives.
    pub fn parse(spec: &str) -> Result<(Fault, Option<String>), String> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut kv = std::collections::BTreeMap::new();
        for pair in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("fault {spec:?}: expected key=value, got {pair:?}"))?;
            kv.insert(k.trim().to_string(), v.trim().to_string());
        }
        let cluster = kv.remove("cluster");
        let mut matcher = Matcher::any();
        if let Some(v) = kv.remove("verb") {
            matcher.verbs = v.split('|').map(str::to_string).collect();
        }
        if let Some(r) = kv.remove("resource") {
            matcher.resources = r.split('|').map(str::to_string).collect();
        }
        matcher.namespace = kv.remove("namespace").filter(|_| kind != "exec-hang");
        let num = |kv: &mut std::collections::BTreeMap<String, String>,
                   k: &str|
         -> Result<Option<u64>, String> {
            kv.remove(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|e| format!("fault {spec:?}: {k}: {e}"))
                })
                .transpose()
        };
        let fault = match kind {
            "http" => {
                let status = num(&mut kv, "status")?.unwrap_or(500) as u16;
                let probability = kv
                    .remove("p")
                    .map(|p| {
                        p.parse::<f64>()
                            .map_err(|e| format!("fault {spec:?}: p: {e}"))
                    })
                    .transpose()?
                    .unwrap_or(1.0);
                let retry = num(&mut kv, "retry-after")?.or(if matches!(status, 429 | 503) {
                    Some(1)
                } else {
                    None
                });
                Fault::Http {
                    status,
                    matcher,
                    probability,
                    seed: num(&mut kv, "seed")?.unwrap_or(0),
                    retry_after_seconds: retry,
                    times: num(&mut kv, "times")?,
                }
            }
            "latency" => Fault::Latency {
                matcher,
                delay: Duration::from_millis(num(&mut kv, "ms")?.unwrap_or(100)),
            },
            "watch-cut" => Fault::WatchCut {
                matcher,
                after_events: num(&mut kv, "after")?.unwrap_or(1) as usize,
            },
            "controller-never-ready" => Fault::ControllerNeverReady {
                controller: kv
                    .remove("name")
                    .ok_or_else(|| format!("fault {spec:?}: name= is required"))?,
            },
            "exec-hang" => Fault::ExecHang {
                namespace: kv.remove("namespace"),
                pod: kv.remove("pod"),
                container: kv.remove("container"),
            },
            other => return Err(format!("unknown fault kind {other:?} in {spec:?}")),
        };
        if let Some(k) = kv.keys().next() {
            return Err(format!("fault {spec:?}: unknown key {k:?}"));
        }
        Ok((fault, cluster))
    }
}

struct Active {
    fault: Fault,
    rng: ChaCha8Rng,
    fired: u64,
}

/// The faults of one cluster.
#[derive(Default)]
pub struct Faults {
    active: Mutex<Vec<Active>>,
}

/// An HTTP error to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedError {
    pub status: u16,
    pub retry_after_seconds: Option<u64>,
}

impl Faults {
    pub fn add(&self, fault: Fault) {
        let seed = match &fault {
            Fault::Http { seed, .. } => *seed,
            _ => 0,
        };
        self.active.lock().unwrap().push(Active {
            fault,
            rng: ChaCha8Rng::seed_from_u64(seed),
            fired: 0,
        });
    }
    pub fn clear(&self) {
        self.active.lock().unwrap().clear();
    }

    /// The HTTP error to inject for a request, if any (draws from the seeded generators).
    pub fn http_error(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
    ) -> Option<InjectedError> {
        let mut active = self.active.lock().unwrap();
        for a in active.iter_mut() {
            if let Fault::Http {
                status,
                matcher,
                probability,
                retry_after_seconds,
                times,
                ..
            } = &a.fault
            {
                if !matcher.matches(verb, group, resource, sub, ns) {
                    continue;
                }
                if times.is_some_and(|t| a.fired >= t) {
                    continue;
                }
                let draw: f64 = a.rng.random();
                if draw < *probability {
                    a.fired += 1;
                    return Some(InjectedError {
                        status: *status,
                        retry_after_seconds: *retry_after_seconds,
                    });
                }
            }
        }
        None
    }

    pub fn latency(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
    ) -> Duration {
        self.active
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| match &a.fault {
                Fault::Latency { matcher, delay }
                    if matcher.matches(verb, group, resource, sub, ns) =>
                {
                    Some(*delay)
                }
                _ => None,
            })
            .sum()
    }

    pub fn watch_cut(&self, group: &str, resource: &str, ns: &str) -> Option<usize> {
        self.active
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| match &a.fault {
                Fault::WatchCut {
                    matcher,
                    after_events,
                } if matcher.matches("watch", group, resource, "", ns) => Some(*after_events),
                _ => None,
            })
            .min()
    }

    pub fn controller_never_ready(&self, controller: &str) -> bool {
        self.active.lock().unwrap().iter().any(|a| {
            matches!(&a.fault, Fault::ControllerNeverReady { controller: c } if c == controller || c == "*")
        })
    }

    pub fn exec_hangs(&self, ns: &str, pod: &str, container: &str) -> bool {
        self.active.lock().unwrap().iter().any(|a| match &a.fault {
            Fault::ExecHang {
                namespace,
                pod: p,
                container: c,
            } => {
                namespace.as_deref().is_none_or(|n| n == ns)
                    && p.as_deref().is_none_or(|n| n == pod)
                    && c.as_deref().is_none_or(|n| n == container)
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_specs() {
        let (f, c) = Fault::parse(
            "http:status=503,verb=create|patch,resource=configmaps,p=0.5,seed=7,cluster=hub",
        )
        .unwrap();
        assert_eq!(c.as_deref(), Some("hub"));
        match f {
            Fault::Http {
                status,
                matcher,
                probability,
                seed,
                retry_after_seconds,
                ..
            } => {
                assert_eq!(
                    (status, probability, seed, retry_after_seconds),
                    (503, 0.5, 7, Some(1))
                );
                assert!(matcher.matches("patch", "", "configmaps", "", "x"));
                assert!(!matcher.matches("get", "", "configmaps", "", "x"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Fault::parse("nope:x=1").is_err());
        assert!(Fault::parse("http:bogus=1").is_err());
        assert!(matches!(
            Fault::parse("watch-cut:after=3").unwrap().0,
            Fault::WatchCut {
                after_events: 3,
                ..
            }
        ));
    }

    #[test]
    fn same_seed_same_faults() {
        let run = |seed| {
            let faults = Faults::default();
            faults.add(Fault::Http {
                status: 500,
                matcher: Matcher::any(),
                probability: 0.5,
                seed,
                retry_after_seconds: None,
                times: None,
            });
            (0..64)
                .map(|_| {
                    faults
                        .http_error("get", "", "pods", "", "default")
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let hits = run(42).iter().filter(|h| **h).count();
        assert!(hits > 10 && hits < 54, "{hits}");
    }
}
