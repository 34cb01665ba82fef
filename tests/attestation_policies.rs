//! The shipped attestation policies (`policies/attestations/*.rego`) judged by the real
//! binary, `vouch attest-check`, on predicates their projects published
//! (`tests/attestations/`, sources in its README) and on copies edited one field at a time.
//! What it proves, with exit codes and exact deny messages:
//! - `slsa-provenance.rego` passes GitHub provenance from the configured repository, a tag
//!   and an accepted builder, and names what it found and what it expected when the
//!   repository, the ref, the builder or the build type is another, or missing; with no
//!   `repositories` configured it denies every provenance; current GitHub provenance (the
//!   workflow as builder id) passes when the workflow is one of an accepted repository's,
//!   and configured `builderIds` are exact.
//! - `vuln-report.rego` denies a Grype or Trivy finding above `maxSeverity` (default HIGH,
//!   compared case-insensitively) once per ID, passes it when it is on `allow` or under a
//!   higher `maxSeverity`, and denies a report it cannot read.
//! - `sbom.rego` passes SPDX 2.3 and CycloneDX 1.6 documents with no denies configured,
//!   denies a package by name and a licence by whole id (inside an `OR` too, any case),
//!   and never for an id that is only part of another (`GPL-2.0-only` in `LGPL-2.0-only`).
//! - Params are read from YAML; a malformed param or a foreign predicate type is denied.
//!
//! Each check is one short process (the evaluation budget is `attest-check`'s 250 ms).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

const GITHUB_HOSTED: &str = "https://github.com/actions/runner/github-hosted";
const ACME: &str = "https://github.com/acme/app";

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/attestations")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/attestations")
        .join(name)
}

fn load(name: &str) -> Value {
    let path = example(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A copy of the example `name`, changed by `edit`, written into `dir`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut statement = load(name);
    edit(&mut statement);
    let path = dir.join(format!("edited-{name}"));
    std::fs::write(&path, serde_json::to_vec_pretty(&statement).expect("json")).expect("write");
    path
}

/// Sets the value at a JSON pointer, which must exist.
fn set(statement: &mut Value, pointer: &str, value: Value) {
    *statement
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
}

/// A params file (YAML is what `--params` reads; JSON is YAML too).
fn params(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write params");
    path
}

fn json_params(dir: &Path, name: &str, value: Value) -> PathBuf {
    params(dir, name, &value.to_string())
}

/// `vouch attest-check`: the exit code and the lines printed.
fn check(statement: &Path, module: &str, params: Option<&Path>) -> (i32, Vec<String>) {
    let mut cmd = Command::new(VOUCH);
    cmd.arg("attest-check")
        .arg("--statement")
        .arg(statement)
        .arg("--policy")
        .arg(policy(module))
        .args(["--image", "ghcr.io/acme/app:v1.2.3"]);
    if let Some(p) = params {
        cmd.arg("--params").arg(p);
    }
    let out = cmd.output().expect("run vouch attest-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 2, "attest-check could not run: {stderr}");
    (code, stdout.lines().map(str::to_string).collect())
}

fn assert_passes(statement: &Path, module: &str, params: Option<&Path>) {
    let (code, lines) = check(statement, module, params);
    assert_eq!(
        (code, lines),
        (0, vec!["passed".to_string()]),
        "{} with {module}",
        statement.display()
    );
}

fn assert_denies(statement: &Path, module: &str, params: Option<&Path>, messages: &[&str]) {
    let (code, lines) = check(statement, module, params);
    let mut want: Vec<String> = messages.iter().map(|m| format!("deny: {m}")).collect();
    want.sort();
    assert_eq!(
        (code, lines),
        (1, want),
        "{} with {module}",
        statement.display()
    );
}

const SLSA: &str = "slsa-provenance.rego";
const HOSTED: &str = "slsa-provenance-github-hosted.json";
const WORKFLOW_BUILDER: &str = "slsa-provenance-workflow-builder.json";
const WORKFLOW: &str = "/predicate/buildDefinition/externalParameters/workflow";

fn acme(dir: &Path) -> PathBuf {
    json_params(dir, "acme.json", json!({"repositories": [ACME]}))
}

#[test]
fn provenance_from_the_repository_a_tag_and_a_github_runner_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_passes(&example(HOSTED), SLSA, Some(&acme(dir.path())));
}

#[test]
fn current_github_provenance_names_its_workflow_as_builder_which_must_be_the_repositorys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow_id =
        "https://github.com/acme/app/.github/workflows/integration.yml@refs/tags/v1.2.3";
    // By default a workflow of an accepted repository is an accepted builder.
    assert_passes(&example(WORKFLOW_BUILDER), SLSA, Some(&acme(dir.path())));
    // A workflow of another repository is not, even when the source repository matches.
    let foreign = edited(dir.path(), WORKFLOW_BUILDER, |s| {
        set(
            s,
            "/predicate/runDetails/builder/id",
            json!("https://github.com/evil/tools/.github/workflows/build.yml@refs/heads/main"),
        )
    });
    assert_denies(
        &foreign,
        SLSA,
        Some(&acme(dir.path())),
        &[&format!(
            "built by https://github.com/evil/tools/.github/workflows/build.yml@refs/heads/main, not one of [{GITHUB_HOSTED}, {ACME}/.github/workflows/*]"
        )],
    );
    // Configured builderIds are exact: the integration workflow is not the release one.
    let release_only = json_params(
        dir.path(),
        "release.json",
        json!({"repositories": [ACME], "builderIds": ["https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3"]}),
    );
    assert_denies(
        &example(WORKFLOW_BUILDER),
        SLSA,
        Some(&release_only),
        &[&format!(
            "built by {workflow_id}, not one of [https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3]"
        )],
    );
    let listed = json_params(
        dir.path(),
        "listed.json",
        json!({"repositories": [ACME], "builderIds": [workflow_id]}),
    );
    assert_passes(&example(WORKFLOW_BUILDER), SLSA, Some(&listed));
}

#[test]
fn provenance_from_another_repository_is_denied_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = edited(dir.path(), HOSTED, |s| {
        set(
            s,
            &format!("{WORKFLOW}/repository"),
            json!("https://github.com/evil/app"),
        )
    });
    assert_denies(
        &evil,
        SLSA,
        Some(&acme(dir.path())),
        &[
            "built from repository https://github.com/evil/app, not one of [https://github.com/acme/app]",
        ],
    );
}

#[test]
fn provenance_from_a_branch_is_denied_unless_its_prefix_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let branch = edited(dir.path(), HOSTED, |s| {
        set(s, &format!("{WORKFLOW}/ref"), json!("refs/heads/main"))
    });
    assert_denies(
        &branch,
        SLSA,
        Some(&acme(dir.path())),
        &["built from ref refs/heads/main, which starts with none of [refs/tags/]"],
    );
    let main_too = json_params(
        dir.path(),
        "main.json",
        json!({"repositories": [ACME], "refPrefixes": ["refs/tags/", "refs/heads/main"]}),
    );
    assert_passes(&branch, SLSA, Some(&main_too));
}

#[test]
fn provenance_from_another_builder_or_build_type_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let self_hosted = edited(dir.path(), HOSTED, |s| {
        set(
            s,
            "/predicate/runDetails/builder/id",
            json!("https://github.com/actions/runner/self-hosted"),
        );
        set(
            s,
            "/predicate/buildDefinition/buildType",
            json!("https://example.com/my-own-build/v1"),
        );
    });
    assert_denies(
        &self_hosted,
        SLSA,
        Some(&acme(dir.path())),
        &[
            &format!(
                "built by https://github.com/actions/runner/self-hosted, not one of [{GITHUB_HOSTED}, {ACME}/.github/workflows/*]"
            ),
            "build type https://example.com/my-own-build/v1, not one of [https://actions.github.io/buildtypes/workflow/v1, https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1]",
        ],
    );
}

#[test]
fn provenance_without_the_fields_checked_is_denied_not_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = edited(dir.path(), HOSTED, |s| {
        set(
            s,
            "/predicate",
            json!({"buildDefinition": {}, "runDetails": {}}),
        )
    });
    assert_denies(
        &bare,
        SLSA,
        Some(&acme(dir.path())),
        &[
            &format!(
                "built by (missing), not one of [{GITHUB_HOSTED}, {ACME}/.github/workflows/*]"
            ),
            "build type (missing), not one of [https://actions.github.io/buildtypes/workflow/v1, https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1]",
            "built from repository (missing), not one of [https://github.com/acme/app]",
            "built from ref (missing), which starts with none of [refs/tags/]",
        ],
    );
}

#[test]
fn with_no_repositories_configured_every_provenance_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let required = "params.repositories is required: list the source repositories whose builds are accepted, e.g. [https://github.com/acme/app]";
    // No params at all (`input.params` is null), an empty map and an empty list.
    assert_denies(&example(HOSTED), SLSA, None, &[required]);
    let empty = params(dir.path(), "empty.yaml", "{}\n");
    assert_denies(&example(HOSTED), SLSA, Some(&empty), &[required]);
    let none = params(dir.path(), "none.yaml", "repositories: []\n");
    assert_denies(&example(HOSTED), SLSA, Some(&none), &[required]);
}

#[test]
fn slsa_params_are_read_from_yaml_and_a_malformed_one_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = params(
        dir.path(),
        "release.yaml",
        "# Releases of acme/app only, from version tags.\nrepositories:\n  - https://github.com/acme/app\nrefPrefixes:\n  - refs/tags/v\n",
    );
    assert_passes(&example(HOSTED), SLSA, Some(&yaml));
    let unversioned = edited(dir.path(), HOSTED, |s| {
        set(s, &format!("{WORKFLOW}/ref"), json!("refs/tags/nightly"))
    });
    assert_denies(
        &unversioned,
        SLSA,
        Some(&yaml),
        &["built from ref refs/tags/nightly, which starts with none of [refs/tags/v]"],
    );
    // A string where a list belongs is not read as anything that could match.
    let scalar = params(
        dir.path(),
        "scalar.yaml",
        "repositories: [https://github.com/acme/app]\nbuilderIds: https://github.com/actions/runner/github-hosted\n",
    );
    assert_denies(
        &example(HOSTED),
        SLSA,
        Some(&scalar),
        &[
            "params.builderIds must be a list of strings, not \"https://github.com/actions/runner/github-hosted\"",
            "built by https://github.com/actions/runner/github-hosted, not one of []",
        ],
    );
}

const VULN: &str = "vuln-report.rego";
const GRYPE: &str = "vuln-grype.json";
const TRIVY: &str = "vuln-trivy.json";

#[test]
fn a_critical_vulnerability_denies_by_default() {
    // Grype writes "Critical": severities compare case-insensitively.
    assert_denies(
        &example(GRYPE),
        VULN,
        None,
        &["CVE-1999-0002 (CRITICAL) in package-2 is above maxSeverity HIGH"],
    );
}

#[test]
fn a_critical_vulnerability_passes_when_allowed_or_under_max_severity_critical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = params(dir.path(), "allow.yaml", "allow:\n  - CVE-1999-0002\n");
    assert_passes(&example(GRYPE), VULN, Some(&allowed));
    let critical = params(dir.path(), "critical.yaml", "maxSeverity: CRITICAL\n");
    assert_passes(&example(GRYPE), VULN, Some(&critical));
    // Allowing another ID changes nothing.
    let other = params(dir.path(), "other.yaml", "allow: [CVE-1999-0001]\n");
    assert_denies(
        &example(GRYPE),
        VULN,
        Some(&other),
        &["CVE-1999-0002 (CRITICAL) in package-2 is above maxSeverity HIGH"],
    );
}

#[test]
fn trivy_findings_deny_once_per_id_with_their_packages() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The cosign spec's example: CVE-2021-28831, HIGH, in busybox and in ssl_client.
    assert_passes(&example(TRIVY), VULN, None);
    let medium = params(dir.path(), "medium.yaml", "maxSeverity: medium\n");
    assert_denies(
        &example(TRIVY),
        VULN,
        Some(&medium),
        &["CVE-2021-28831 (HIGH) in busybox, ssl_client is above maxSeverity MEDIUM"],
    );
    let critical = edited(dir.path(), TRIVY, |s| {
        set(
            s,
            "/predicate/scanner/result/Results/0/Vulnerabilities/0/Severity",
            json!("CRITICAL"),
        )
    });
    assert_denies(
        &critical,
        VULN,
        None,
        &["CVE-2021-28831 (CRITICAL) in busybox is above maxSeverity HIGH"],
    );
    assert_denies(
        &critical,
        VULN,
        Some(&medium),
        &["CVE-2021-28831 (CRITICAL) in busybox, ssl_client is above maxSeverity MEDIUM"],
    );
}

#[test]
fn a_report_that_cannot_be_read_or_a_bad_max_severity_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = edited(dir.path(), GRYPE, |s| {
        set(s, "/predicate/scanner/result", json!({"vulns": []}))
    });
    assert_denies(
        &unknown,
        VULN,
        None,
        &[
            "the scanner result is neither Trivy JSON (SchemaVersion, Results) nor Grype JSON (matches), so it cannot be read",
        ],
    );
    let severe = params(dir.path(), "severe.yaml", "maxSeverity: SEVERE\n");
    assert_denies(
        &example(TRIVY),
        VULN,
        Some(&severe),
        &[
            "params.maxSeverity must be one of LOW, MEDIUM, HIGH, CRITICAL, not \"SEVERE\"",
            "CVE-2021-28831 (HIGH) in busybox, ssl_client is above maxSeverity (invalid)",
        ],
    );
}

const SBOM: &str = "sbom.rego";
const SPDX: &str = "sbom-spdx-2.3.json";
const CYCLONEDX: &str = "sbom-cyclonedx-1.6.json";

#[test]
fn sboms_pass_with_nothing_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = params(
        dir.path(),
        "empty.yaml",
        "deniedPackages: []\ndeniedLicenses: []\n",
    );
    for sbom in [SPDX, CYCLONEDX] {
        assert_passes(&example(sbom), SBOM, None);
        assert_passes(&example(sbom), SBOM, Some(&empty));
    }
}

#[test]
fn an_spdx_package_is_denied_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = params(
        dir.path(),
        "packages.yaml",
        "deniedPackages:\n  - glibc\n  - Apache Commons Lang\n  - Glibc-Ports\n",
    );
    assert_denies(
        &example(SPDX),
        SBOM,
        Some(&denied),
        &[
            "package glibc 2.11.1 is denied",
            // No versionInfo in the document: the message has none.
            "package Apache Commons Lang is denied",
        ],
    );
}

#[test]
fn an_spdx_licence_is_denied_inside_or_and_and_expressions_in_any_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = params(dir.path(), "lgpl.yaml", "deniedLicenses: [LGPL-2.0-only]\n");
    // glibc: concluded "(LGPL-2.0-only OR LicenseRef-3)", declared "(LGPL-2.0-only AND LicenseRef-3)".
    assert_denies(
        &example(SPDX),
        SBOM,
        Some(&denied),
        &[
            "package glibc is licensed (LGPL-2.0-only AND LicenseRef-3), which includes denied licence LGPL-2.0-only",
            "package glibc is licensed (LGPL-2.0-only OR LicenseRef-3), which includes denied licence LGPL-2.0-only",
        ],
    );
    let lower = params(dir.path(), "mpl.yaml", "deniedLicenses: [mpl-1.0]\n");
    assert_denies(
        &example(SPDX),
        SBOM,
        Some(&lower),
        &["package Saxon is licensed MPL-1.0, which includes denied licence mpl-1.0"],
    );
}

#[test]
fn a_licence_id_that_is_only_part_of_another_does_not_deny() {
    let dir = tempfile::tempdir().expect("tempdir");
    // "GPL-2.0-only" is inside glibc's "LGPL-2.0-only", "LicenseRef" starts "LicenseRef-3",
    // "GPL-2.0" starts mylibrary's "GPL-2.0-with-classpath-exception" and "EPL-2" its
    // "EPL-2.0": none is a whole id in either document.
    let denied = params(
        dir.path(),
        "gpl.yaml",
        "deniedLicenses: [GPL-2.0-only, GPL-2.0, LicenseRef, EPL-2]\n",
    );
    assert_passes(&example(SPDX), SBOM, Some(&denied));
    assert_passes(&example(CYCLONEDX), SBOM, Some(&denied));
}

#[test]
fn a_cyclonedx_component_is_denied_by_name_and_by_licence_id_or_expression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = params(
        dir.path(),
        "cdx.yaml",
        "deniedPackages: [mylibrary]\ndeniedLicenses: [EPL-2.0, Apache-2.0]\n",
    );
    assert_denies(
        &example(CYCLONEDX),
        SBOM,
        Some(&denied),
        &[
            "package mylibrary 1.0.0 is denied",
            "package mylibrary is licensed EPL-2.0 OR GPL-2.0-with-classpath-exception, which includes denied licence EPL-2.0",
            "package tomcat-catalina is licensed Apache-2.0, which includes denied licence Apache-2.0",
        ],
    );
}

#[test]
fn nested_cyclonedx_components_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // myframework > middle > inner: two levels below the top.
    let nested = edited(dir.path(), CYCLONEDX, |s| {
        assert_eq!(s["predicate"]["components"][2]["name"], "myframework");
        s["predicate"]["components"][2]["components"] = json!([{
            "type": "library", "name": "middle", "version": "2.0.0",
            "components": [{"type": "library", "name": "inner", "version": "0.1.0",
                            "licenses": [{"expression": "(MIT OR AGPL-3.0-only)"}]}],
        }]);
    });
    let denied = params(
        dir.path(),
        "agpl.yaml",
        "deniedPackages: [inner]\ndeniedLicenses: [AGPL-3.0-only]\n",
    );
    assert_denies(
        &nested,
        SBOM,
        Some(&denied),
        &[
            "package inner 0.1.0 is denied",
            "package inner is licensed (MIT OR AGPL-3.0-only), which includes denied licence AGPL-3.0-only",
        ],
    );
    // Five levels: the fifth is not read, so the BOM is denied rather than half-checked.
    let deep = edited(dir.path(), CYCLONEDX, |s| {
        let mut level = json!({"type": "library", "name": "level5"});
        for n in (1..=4).rev() {
            level = json!({"type": "library", "name": format!("level{n}"), "components": [level]});
        }
        s["predicate"]["components"] = json!([level]);
    });
    assert_denies(
        &deep,
        SBOM,
        None,
        &[
            "component level4 has components nested more than four levels deep, which this policy does not read",
        ],
    );
}

#[test]
fn a_predicate_that_is_not_what_its_type_says_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_cyclonedx = edited(dir.path(), CYCLONEDX, |s| {
        set(s, "/predicate/bomFormat", json!("SPDX"))
    });
    assert_denies(
        &not_cyclonedx,
        SBOM,
        None,
        &["the predicate is not a CycloneDX JSON BOM (bomFormat is not CycloneDX)"],
    );
    let wrapped = edited(dir.path(), SPDX, |s| {
        let document = s["predicate"].to_string();
        set(s, "/predicate", json!({"Data": document}))
    });
    assert_denies(
        &wrapped,
        SBOM,
        None,
        &["the predicate is not an SPDX JSON document (no spdxVersion)"],
    );
}

#[test]
fn each_policy_denies_a_predicate_type_it_is_not_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_denies(
        &example(SPDX),
        SLSA,
        Some(&acme(dir.path())),
        &["predicate type https://spdx.dev/Document is not https://slsa.dev/provenance/v1"],
    );
    assert_denies(
        &example(HOSTED),
        VULN,
        None,
        &[
            "predicate type https://slsa.dev/provenance/v1 is not https://cosign.sigstore.dev/attestation/vuln/v1",
        ],
    );
    assert_denies(
        &example(GRYPE),
        SBOM,
        None,
        &[
            "predicate type https://cosign.sigstore.dev/attestation/vuln/v1 is neither SPDX (https://spdx.dev/Document) nor CycloneDX (https://cyclonedx.org/bom)",
        ],
    );
}
