//! Kubernetes resource quantities as the API writes them (`500m`, `2`,
//! `1.5`; `512Mi`, `1Gi`, `500M`, `1e9`, plain bytes): read by the live
//! adapter from pod specs and by the twin from a recording's Deployments.

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// CPU cores of a quantity; `None` unless it is a non-negative number.
pub fn cpu_cores(q: &str) -> Option<f64> {
    let q = q.trim();
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => q.parse().ok(),
    }
    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// Bytes of a quantity; `None` unless it is a non-negative number.
pub fn bytes(q: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", MIB),
        ("Gi", MIB * 1024.0),
        ("Ti", MIB * 1024.0 * 1024.0),
        ("Pi", MIB * 1024.0 * 1024.0 * 1024.0),
        ("Ei", MIB * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let q = q.trim();
    let (number, factor) = UNITS
        .iter()
        .find_map(|(suffix, f)| q.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((q, 1.0));
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * factor)
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// MiB of a memory quantity.
pub fn mib(q: &str) -> Option<f64> {
    bytes(q).map(|b| b / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_the_api_writes_them() {
        assert_eq!(cpu_cores("500m"), Some(0.5));
        assert_eq!(cpu_cores("2"), Some(2.0));
        assert_eq!(cpu_cores("0.5"), Some(0.5));
        assert_eq!(cpu_cores("x"), None);
        assert_eq!(bytes("512Mi"), Some(512.0 * MIB));
        assert_eq!(bytes("1G"), Some(1e9));
        assert_eq!(bytes("1048576"), Some(MIB));
        assert_eq!(bytes("lots"), None);
        assert_eq!(mib("256Mi"), Some(256.0));
        assert_eq!(mib("1Gi"), Some(1024.0));
        assert!((mib("128M").unwrap() - 122.0703125).abs() < 1e-9);
        assert_eq!(mib("-1Mi"), None);
    }
}
