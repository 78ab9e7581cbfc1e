//! The images the served simulation names its revisions and held bad
//! deploys by: `selfheal serve` writes them into Deployments, and a live
//! replay sets them to start a bad deploy the simulation knows.

/// The image that names revision `k` of `service`.
pub fn image(service: &str, k: u32) -> String {
    format!("selfheal.local/{service}:r{k}")
}

/// The image that starts the scenario's held bad deploy `fault` on
/// `service` (`selfheal serve --without-faults`): a replay's template
/// change to the revision the simulation knows as bad.
pub fn fault_image(service: &str, fault: usize) -> String {
    format!("selfheal.local/{service}:fault-{fault}")
}

/// The held fault an image names, if it is one of `service`'s.
pub fn fault_of_image(service: &str, image: &str) -> Option<usize> {
    image
        .strip_prefix(&format!("selfheal.local/{service}:fault-"))?
        .parse()
        .ok()
}

/// The revision an image names, if it is one of `service`'s.
pub fn revision_of_image(service: &str, image: &str) -> Option<u32> {
    image
        .strip_prefix(&format!("selfheal.local/{service}:r"))?
        .parse()
        .ok()
}
