use super::*;

const FILE: &str = r#"
version: 1
teams:
  team-abc:
    models:
      gpt-4.1: model_name_team-abc_1
      "claude-*": model_name_team-abc_claude
      "claude-3-*": model_name_team-abc_claude3
      "*-mini": model_name_team-abc_mini
      AgentX-target: model_name_team-abc_agentx
  team_x-2:
    models:
      gpt-4.1: model_name_team_x-2_1
aliases:
  AgentX-LLM: AgentX-target
  "fast-*": gpt-4.1
  shared: public-model
keys:
  0000000000000000000000000000000000000000000000000000000000000001: team-abc
"#;

fn mapping() -> Mapping {
    Mapping::parse(FILE, "test.yaml").expect("example mapping is valid")
}

fn target<'a>(m: &'a Mapping, team: Option<&str>, name: &'a str) -> Option<&'a str> {
    m.resolve(team, name).map(|r| r.target)
}

#[test]
fn team_exact_beats_patterns_and_aliases() {
    let m = mapping();
    assert_eq!(
        target(&m, Some("team-abc"), "gpt-4.1"),
        Some("model_name_team-abc_1")
    );
    assert_eq!(
        target(&m, Some("team_x-2"), "gpt-4.1"),
        Some("model_name_team_x-2_1")
    );
    assert_eq!(target(&m, None, "gpt-4.1"), None, "no team, no team rules");
}

#[test]
fn most_specific_pattern_wins_regardless_of_order() {
    let m = mapping();
    assert_eq!(
        target(&m, Some("team-abc"), "claude-3-opus"),
        Some("model_name_team-abc_claude3")
    );
    assert_eq!(
        target(&m, Some("team-abc"), "claude-2"),
        Some("model_name_team-abc_claude")
    );
    // "claude-*" (7 literal chars) vs "*-mini" (5): the longer literal wins.
    assert_eq!(
        target(&m, Some("team-abc"), "claude-mini"),
        Some("model_name_team-abc_claude")
    );
}

#[test]
fn equal_specificity_breaks_ties_on_pattern_text() {
    for order in [["ab*", "*yz"], ["*yz", "ab*"]] {
        let text = format!(
            "version: 1\naliases:\n  \"{}\": first\n  \"{}\": second\n",
            order[0], order[1]
        );
        let m = Mapping::parse(&text, "t").expect("valid");
        let r = m.resolve(None, "abxyz").expect("both patterns match");
        assert_eq!(
            r.from_key(),
            "*yz",
            "'*' sorts before 'a', independent of file order {order:?}"
        );
    }
}

#[test]
fn alias_then_team_applied_once() {
    let m = mapping();
    let r = m
        .resolve(Some("team-abc"), "AgentX-LLM")
        .expect("alias applies");
    assert_eq!(r.target, "model_name_team-abc_agentx");
    assert_eq!(r.alias.map(|a| a.key), Some("AgentX-LLM"));
    assert_eq!(r.team.map(|t| t.key), Some("AgentX-target"));
    assert_eq!(
        target(&m, None, "AgentX-LLM"),
        Some("AgentX-target"),
        "team-less callers get the alias only"
    );
    assert_eq!(
        target(&m, Some("team-abc"), "fast-thing"),
        Some("model_name_team-abc_1")
    );
    assert_eq!(target(&m, Some("nobody"), "shared"), Some("public-model"));
    assert_eq!(target(&m, Some("team-abc"), "unmapped"), None);
}

#[test]
fn keys_table_finds_team() {
    let m = mapping();
    let mut digest = [0u8; 32];
    digest[31] = 1;
    assert_eq!(m.team_for_key(&digest), Some("team-abc"));
    assert_eq!(m.team_for_key(&[0u8; 32]), None);
    assert_eq!(m.owner_of("model_name_team-abc_1"), Some("team-abc"));
}

fn errors(text: &str) -> String {
    match Mapping::parse(text, "bad.yaml") {
        Ok(_) => panic!("expected {text:?} to be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_files_are_rejected_with_file_line_and_entry() {
    let e = errors("version: 1\nteams:\n  t:\n    models:\n      \"a*b*\": x\n");
    assert!(e.starts_with("bad.yaml: line 5:"), "{e}");
    assert!(e.contains("\"a*b*\"") && e.contains("one '*'"), "{e}");

    let e = errors("version: 2\n");
    assert!(
        e.contains("line 1") && e.contains("unsupported version 2"),
        "{e}"
    );

    let e = errors("version: 1\naliases:\n  a: b\n  b: c\n");
    assert!(
        e.contains("line 3") && e.contains("chains are not followed"),
        "{e}"
    );

    let e = errors("version: 1\naliases:\n  a: b\n  b: a\n");
    assert!(
        e.contains("chains are not followed"),
        "a cycle is a chain: {e}"
    );

    let e = errors("version: 1\nkeys:\n  abc: team-abc\n");
    assert!(e.contains("not a SHA-256"), "{e}");

    let e = errors(&format!("version: 1\nkeys:\n  {}: ghost\n", "a".repeat(64)));
    assert!(
        e.contains("ghost") && e.contains("no entry under `teams`"),
        "{e}"
    );

    let e = errors("version: 1\nteems: {}\n");
    assert!(e.contains("teems"), "unknown fields are named: {e}");

    let e = errors("version: 1\naliases:\n  \"a,b\": c\n  d: \"*\"\n");
    assert!(
        e.contains("contains ','") && e.contains("may not contain '*'"),
        "all issues reported: {e}"
    );

    let e = errors("version: 1\nteams: [\n");
    assert!(e.starts_with("bad.yaml:"), "{e}");

    assert!(errors("").contains("empty"));
}

#[test]
fn fixed_points_are_not_chains() {
    let m = Mapping::parse(
        "version: 1\nteams:\n  t:\n    models:\n      \"*\": internal-default\n",
        "t",
    )
    .expect("a pattern whose target maps to itself is fine");
    assert_eq!(target(&m, Some("t"), "anything"), Some("internal-default"));
}

#[test]
fn json_is_accepted() {
    let m =
        Mapping::parse(r#"{"version": 1, "aliases": {"a": "b"}}"#, "t.json").expect("JSON is YAML");
    assert_eq!(target(&m, None, "a"), Some("b"));
}

#[test]
fn counts_rules() {
    let c = mapping().counts();
    assert_eq!((c.teams, c.team_exact, c.team_patterns), (2, 3, 3));
    assert_eq!((c.alias_exact, c.alias_patterns, c.keys), (2, 1, 1));
}
