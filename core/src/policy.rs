//! A controller policy's identity: the canonical `[controller]` table of
//! its spec, and a hash of it that an approval records and the live
//! adapter checks before it acts.

use crate::scenario::ControllerSpec;

/// The `[controller]` table of a spec, as scenario files take it.
pub fn controller_toml(spec: &ControllerSpec) -> String {
    #[derive(serde::Serialize)]
    struct Wrap<'a> {
        controller: &'a ControllerSpec,
    }
    toml::to_string(&Wrap { controller: spec }).expect("a controller spec serialises")
}

/// A stable 64-bit FNV-1a hash of the policy's canonical TOML (identifies
/// the policy; not a cryptographic signature).
pub fn policy_hash(spec: &ControllerSpec) -> (String, String) {
    let canonical = controller_toml(spec);
    let h = crate::digest::Fnv1a64::hex_of(canonical.as_bytes());
    (format!("fnv1a64:{h}"), canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_identifies_the_policy() {
        let a = ControllerSpec::parse_short("selfheal").unwrap();
        let mut b = a.clone();
        b.cpu_target = Some(0.6);
        assert_eq!(policy_hash(&a), policy_hash(&a.clone()));
        assert_ne!(policy_hash(&a).0, policy_hash(&b).0);
    }
}
