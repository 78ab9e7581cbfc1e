//! Bad scenario files get an error that names the file, the line and the
//! field, and says what is wrong; nothing panics.

use std::path::Path;

use selfheal::scenario::{self, ScenarioError};

const GOOD: &str = r#"name = "t"
duration_s = 60
seed = 1

[slo]
latency_ms = 100

[[load]]
service = "a"
curve = { kind = "constant", rate = 10 }

[[service]]
name = "a"
revision = { service_time_ms = 5 }

  [[service.call]]
  to = "b"
  probability = 0.5

[[service]]
name = "b"
revision = { service_time_ms = 5 }
"#;

fn error_for(text: &str) -> ScenarioError {
    match scenario::parse(text, "bad.toml", Path::new(".")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

fn assert_error(text: &str, needle_line: &str, field: &str, words: &str) {
    let e = error_for(text);
    let msg = e.to_string();
    let line = line_of(text, needle_line);
    assert!(
        msg.starts_with(&format!("bad.toml:{line}")),
        "wrong line (want {line}): {msg}"
    );
    assert!(msg.contains(field), "no field `{field}`: {msg}");
    assert!(msg.contains(words), "no `{words}`: {msg}");
}

#[test]
fn the_good_file_parses() {
    scenario::parse(GOOD, "good.toml", Path::new(".")).unwrap();
}

#[test]
fn unknown_service_in_the_call_graph() {
    let t = GOOD.replace("to = \"b\"", "to = \"nope\"");
    assert_error(
        &t,
        "to = \"nope\"",
        "service[0].call[0].to",
        "unknown service `nope`",
    );
}

#[test]
fn negative_rate() {
    let t = GOOD.replace("rate = 10", "rate = -5");
    assert_error(&t, "rate = -5", "load[0].curve.rate", "zero or positive");
}

#[test]
fn probability_above_one() {
    let t = GOOD.replace("probability = 0.5", "probability = 1.5");
    assert_error(
        &t,
        "probability = 1.5",
        "service[0].call[0].probability",
        "[0, 1]",
    );
}

#[test]
fn missing_trace_file() {
    let t = GOOD.replace(
        r#"{ kind = "constant", rate = 10 }"#,
        r#"{ kind = "trace", file = "no/such.csv", peak = 10 }"#,
    );
    assert_error(&t, "no/such.csv", "load[0].curve.file", "cannot read trace");
}

#[test]
fn unknown_field_names_its_line_and_field() {
    let t = GOOD.replace("probability = 0.5", "probabilty = 0.5");
    assert_error(
        &t,
        "probabilty",
        "service[0].call[0].probabilty",
        "unknown field `probabilty`",
    );
}

#[test]
fn broken_toml_is_a_syntax_error_with_line_and_column() {
    let t = GOOD.replace("probability = 0.5", "probability = = 0.5");
    let e = error_for(&t);
    assert!(matches!(e, ScenarioError::Syntax { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("bad.toml:{}:", line_of(&t, "probability = ="))),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_the_line() {
    let t = GOOD.replace("duration_s = 60", "duration_s = \"an hour\"");
    let msg = error_for(&t).to_string();
    assert!(msg.starts_with("bad.toml:2:"), "{msg}");
}

#[test]
fn call_graph_cycle() {
    let t = GOOD.replace(
        "[[service]]\nname = \"b\"\nrevision = { service_time_ms = 5 }\n",
        "[[service]]\nname = \"b\"\nrevision = { service_time_ms = 5 }\n  [[service.call]]\n  to = \"a\"\n",
    );
    let msg = error_for(&t).to_string();
    assert!(msg.contains("cycle: a -> b -> a"), "{msg}");
}

#[test]
fn fault_field_that_does_not_apply() {
    let t = format!(
        "{GOOD}\n[[fault]]\nkind = \"pod_kill\"\nservice = \"a\"\nat_s = 10\nadded_ms = 5\n"
    );
    assert_error(
        &t,
        "added_ms = 5",
        "fault[0].added_ms",
        "does not apply to a `pod_kill` fault",
    );
}

#[test]
fn fault_after_the_end() {
    let t = format!("{GOOD}\n[[fault]]\nkind = \"hang\"\nservice = \"a\"\nat_s = 100\n");
    assert_error(&t, "at_s = 100", "fault[0].at_s", "not before the end");
}

#[test]
fn unknown_fault_kind() {
    let t = format!("{GOOD}\n[[fault]]\nkind = \"meteor\"\nservice = \"a\"\nat_s = 1\n");
    let msg = error_for(&t).to_string();
    assert!(
        msg.contains("meteor") && msg.starts_with(&format!("bad.toml:{}", line_of(&t, "meteor"))),
        "{msg}"
    );
}

#[test]
fn bad_trace_row_names_the_trace_line() {
    let dir = std::env::temp_dir().join(format!("selfheal-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.csv"), "t_seconds,value\n0,1\n60,oops\n").unwrap();
    let t = GOOD.replace(
        r#"{ kind = "constant", rate = 10 }"#,
        r#"{ kind = "trace", file = "t.csv" }"#,
    );
    let msg = scenario::parse(&t, "bad.toml", &dir)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 3") && msg.contains("`oops`"), "{msg}");
}

#[test]
fn a_missing_top_level_field_is_not_blamed_on_the_first_key() {
    let t = GOOD.replace("[slo]\nlatency_ms = 100\n", "");
    let msg = error_for(&t).to_string();
    assert!(msg.contains("missing field `slo`"), "{msg}");
    assert!(!msg.contains("`name`"), "blames the first key: {msg}");
    // A missing field of a nested table still names the table.
    let t = GOOD.replace("name = \"a\"\n", "");
    assert_error(&t, "[[service]]", "service[0]", "missing field `name`");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let msg = scenario::load_file(Path::new("does/not/exist.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does/not/exist.toml"), "{msg}");
}

#[test]
fn every_bundled_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            scenario::load_file(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 7, "{n} scenarios");
}

#[test]
fn a_trace_that_is_a_fifo_or_a_device_is_refused_without_reading_it() {
    // Formerly `check` blocked for ever on a FIFO and read /dev/zero until
    // out of memory.
    let dir = std::env::temp_dir().join(format!("selfheal-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("trace.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    for file in [fifo.display().to_string(), "/dev/zero".to_string()] {
        let t = GOOD.replace(
            r#"{ kind = "constant", rate = 10 }"#,
            &format!(r#"{{ kind = "trace", file = "{file}", peak = 10 }}"#),
        );
        assert_error(
            &t,
            "kind = \"trace\"",
            "load[0].curve.file",
            "not a regular file",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_runaway_node_count_is_refused() {
    // Formerly an abort allocating 48 GiB of node names.
    let t = format!(
        "{GOOD}\n[[cluster.node]]\nname = \"n\"\ncpu = 4\nmemory_mib = 8192\ncount = 2147483648\n"
    );
    assert_error(
        &t,
        "count = 2147483648",
        "cluster.node[0].count",
        "must be 1 to 10000",
    );
}

#[test]
fn a_scrape_interval_too_short_to_finish_is_refused() {
    let t = format!("{GOOD}\n[metrics]\nscrape_interval_s = 1e-9\n");
    assert_error(
        &t,
        "scrape_interval_s = 1e-9",
        "metrics.scrape_interval_s",
        "must be at least 0.1 s",
    );
}

#[test]
fn a_load_rate_beyond_the_request_budget_is_refused() {
    // Formerly a run that exhausted memory (1e308) or ran for hours (2^32).
    for rate in ["1e308", "4294967296"] {
        let t = GOOD.replace("rate = 10 }", &format!("rate = {rate} }}"));
        assert_error(&t, "curve = {", "load[0].curve", "per load");
    }
    // A product of two modest curves is bounded by its peak too.
    let t = GOOD.replace(
        "curve = { kind = \"constant\", rate = 10 }",
        "curve = { kind = \"product\", parts = [{ kind = \"constant\", rate = 50000 }, { kind = \"constant\", rate = 50000 }] }",
    );
    assert_error(&t, "curve = {", "load[0].curve", "per load");
    // Within the peak but over the run's budget: 1e6/s for two hours.
    let t = GOOD
        .replace("rate = 10 }", "rate = 1000000 }")
        .replace("duration_s = 60", "duration_s = 7200");
    assert_error(&t, "curve = {", "load[0].curve", "per run");
}

#[test]
fn a_deep_call_chain_is_checked_without_recursion() {
    // Formerly a stack overflow in the cycle check (60,000 services).
    let n = 60_000;
    let mut t = String::from(
        "name = \"chain\"\nduration_s = 1\nseed = 1\n[slo]\nlatency_ms = 100\n\
         [[load]]\nservice = \"s0\"\ncurve = { kind = \"constant\", rate = 1 }\n",
    );
    for i in 0..n {
        t.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nrevision = {{ service_time_ms = 1 }}\n"
        ));
        if i + 1 < n {
            t.push_str(&format!("  [[service.call]]\n  to = \"s{}\"\n", i + 1));
        }
    }
    let sc = scenario::parse(&t, "chain.toml", Path::new(".")).expect("a chain is valid");
    let cc = selfheal::sim::controllers::knative_container_concurrency(&sc.spec);
    assert_eq!(cc.len(), n);
    // Closing the chain into a loop is found, however long it is.
    let t = t.replacen(
        "name = \"s59999\"\nrevision = { service_time_ms = 1 }\n",
        "name = \"s59999\"\nrevision = { service_time_ms = 1 }\n  [[service.call]]\n  to = \"s0\"\n",
        1,
    );
    let e = error_for(&t).to_string();
    assert!(
        e.contains("the call graph has a cycle: s0 -> s1 -> "),
        "{}",
        &e[..200.min(e.len())]
    );
}

#[test]
fn type_errors_name_the_field() {
    // Formerly `bad.toml:19:12: invalid value: integer -3, expected u32`.
    let t = GOOD.replace("name = \"b\"\n", "name = \"b\"\nreplicas = -3\n");
    assert_error(&t, "replicas = -3", "service[1].replicas", "expected u32");
    let t = GOOD.replace(
        "service_time_ms = 5 }\n\n  [[",
        "service_time_ms = \"x\" }\n\n  [[",
    );
    assert_error(
        &t,
        "service_time_ms = \"x\"",
        "service[0].revision.service_time_ms",
        "expected f64",
    );
    let t = GOOD.replace("kind = \"constant\"", "kind = \"constan\"");
    assert_error(
        &t,
        "kind = \"constan\"",
        "load[0].curve.kind",
        "unknown variant",
    );
    let t = GOOD.replace("latency_ms = 100", "latency_msec = 100");
    assert_error(&t, "latency_msec", "slo.latency_msec", "unknown field");
}

#[test]
fn a_bad_policy_file_is_named_with_its_line_and_field() {
    let text = "# tuned\n[controller]\nkind = \"hpa\"\ncpu_target = 0.6\n";
    match scenario::parse_policy(text, "policy.toml") {
        Err(ScenarioError::Invalid {
            file, line, field, ..
        }) => {
            assert_eq!((file.as_str(), line), ("policy.toml", 4));
            assert_eq!(field, "controller.cpu_target");
        }
        other => panic!("{other:?}"),
    }
    let e = scenario::parse_policy("[controller]\nkind = \"nope\"\n", "policy.toml").unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    let ok = scenario::parse_policy("[controller]\nkind = \"hpa\"\n", "policy.toml").unwrap();
    assert_eq!(
        ok,
        selfheal::scenario::ControllerSpec::parse_short("hpa").unwrap()
    );
}

#[test]
fn hpa_behavior_settings_are_checked_where_they_are_written() {
    let with = |table: &str| format!("{GOOD}\n[controller]\n{table}");
    let t = with("kind = \"selfheal\"\nscale_down_stabilization_s = 60\n");
    assert_error(
        &t,
        "scale_down_stabilization_s = 60",
        "controller.scale_down_stabilization_s",
        "does not apply to a `selfheal` controller",
    );
    let t = with("kind = \"hpa\"\nscale_up_stabilization_s = 4000\n");
    assert_error(
        &t,
        "scale_up_stabilization_s = 4000",
        "controller.scale_up_stabilization_s",
        "must be at most 3600",
    );
    let t = with("kind = \"hpa\"\nscale_down_percent = 0\n");
    assert_error(
        &t,
        "scale_down_percent = 0",
        "controller.scale_down_percent",
        "must be at least 1",
    );
    let ok = with("kind = \"hpa\"\nscale_down_stabilization_s = 60\nscale_up_percent = 200\n");
    let sc = scenario::parse(&ok, "ok.toml", Path::new(".")).unwrap();
    assert_eq!(sc.spec.controller.scale_down_stabilization_s, Some(60));
    assert_eq!(sc.spec.controller.scale_up_percent, Some(200));
}

#[test]
fn the_scale_down_delay_belongs_to_kpa() {
    let with = |table: &str| format!("{GOOD}\n[controller]\n{table}");
    let t = with("kind = \"hpa\"\nscale_down_delay_s = 60\n");
    assert_error(
        &t,
        "scale_down_delay_s = 60",
        "controller.scale_down_delay_s",
        "does not apply to a `hpa` controller",
    );
    let t = with("kind = \"kpa\"\nscale_down_delay_s = 7200\n");
    assert_error(
        &t,
        "scale_down_delay_s = 7200",
        "controller.scale_down_delay_s",
        "must be at most 3600",
    );
}
