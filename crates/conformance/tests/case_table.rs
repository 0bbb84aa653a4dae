//! The README's table of cases is the suite's list: every case is in it (by name, or in a
//! row `area::*` (N cases) whose count matches), and it names no case that does not exist.

use std::collections::BTreeMap;

#[test]
fn the_readme_lists_every_case_and_no_other() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut named = Vec::new();
    let mut grouped = BTreeMap::new();
    // Only the table under "## The cases": other tables (the author's checklist) name
    // helpers by path, which look like case names.
    let section = readme
        .split_once("\n## The cases")
        .expect("the README has a \"## The cases\" section")
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((case, after)) = rest.split_once('`') else {
            continue;
        };
        match case.strip_suffix("::*") {
            Some(area) => {
                let count: usize = after
                    .trim()
                    .strip_prefix('(')
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a group row without \"(N cases)\": {line}"));
                grouped.insert(area.to_string(), count);
            }
            None if case.contains("::") => named.push(case.to_string()),
            None => {}
        }
    }
    let cases: Vec<String> = synclog_conformance::cases::all()
        .iter()
        .map(|c| format!("{}::{}", c.area, c.name))
        .collect();
    for case in &cases {
        let area = case.split("::").next().unwrap();
        assert!(
            named.contains(case) || grouped.contains_key(area),
            "{case} is not in the README's table of cases"
        );
    }
    for case in &named {
        assert!(
            cases.contains(case),
            "the README lists {case}, which is not a case"
        );
    }
    for (area, count) in &grouped {
        let have = cases
            .iter()
            .filter(|c| c.starts_with(&format!("{area}::")))
            .count();
        assert_eq!(
            have, *count,
            "the README's row {area}::* says {count} cases; the suite has {have}"
        );
    }
}
