# Vulnerability report: does the image's scan list a vulnerability more severe than we
# accept?
#
# For cosign's vulnerability attestation, predicate type
# https://cosign.sigstore.dev/attestation/vuln/v1 (sigstore/cosign
# specs/COSIGN_VULN_ATTESTATION_SPEC.md; `cosign attest --type vuln`). The spec's early
# spelling without the scheme, cosign.sigstore.dev/attestation/vuln/v1, is accepted too.
# Any other predicate type is denied.
#
# The scanner's own JSON is predicate.scanner.result (or, in the spec's first draft,
# predicate.scanners[].result). Two formats are read:
#   - Trivy (`trivy image -f json`): Results[].Vulnerabilities[] with VulnerabilityID,
#     PkgName, Severity.
#   - Grype (`grype -o json`): matches[] with vulnerability.id, vulnerability.severity and
#     artifact.name.
# A result that is neither (no SchemaVersion and no matches list) is denied: a report this
# policy cannot read must not pass as clean.
#
# Severities are compared case-insensitively on the scale LOW < MEDIUM < HIGH < CRITICAL.
# UNKNOWN, NEGLIGIBLE and anything else never exceed the threshold. A vulnerability above
# maxSeverity and not on `allow` denies, once per ID, naming the highest severity it was
# reported with and the packages (sorted) it was found in:
#   "CVE-1999-0002 (CRITICAL) in package-2 is above maxSeverity HIGH"
#
# Params (the `params` map of the attestation in vouch's config, or `--params` of
# `vouch attest-check`); both optional:
#
#   maxSeverity  the most severe level accepted: LOW, MEDIUM, HIGH or CRITICAL (any case).
#                Anything else is denied with a message, and then every known severity
#                denies.
#                default: HIGH (any CRITICAL denies)
#                example: MEDIUM
#
#   allow        list of vulnerability IDs (exact, as the scanner reports them: CVE-...,
#                GHSA-..., ALPINE-...) that never deny, whatever their severity.
#                default: []
#                example: ["CVE-2021-28831"]
package vouch.attestations.vuln_report

import rego.v1

predicate_types := {
	"https://cosign.sigstore.dev/attestation/vuln/v1",
	"cosign.sigstore.dev/attestation/vuln/v1",
}

ranks := {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

names := {1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "CRITICAL"}

# `input.params` is null when nothing is configured.
params := input.params if {
	is_object(input.params)
} else := {}

raw_max_severity := object.get(params, "maxSeverity", null)

max_severity := "HIGH" if {
	raw_max_severity == null
} else := upper(raw_max_severity) if {
	is_string(raw_max_severity)
	ranks[upper(raw_max_severity)]
} else := "(invalid)"

max_rank := object.get(ranks, max_severity, 0)

allow := params.allow if {
	is_array(params.allow)
} else := []

statement_type := object.get(input.statement, "predicateType", null)

predicate := object.get(input.statement, "predicate", {})

# Every scanner result in the predicate.
results contains result if {
	result := predicate.scanner.result
}

results contains result if {
	some scanner in predicate.scanners
	result := scanner.result
}

trivy(result) if {
	is_object(result)
	result.SchemaVersion
}

grype(result) if {
	is_object(result)
	is_array(result.matches)
}

text(value) := value if {
	is_string(value)
} else := "(unknown)"

# Every vulnerability reported: {"id", "severity" (upper case), "package"}.
findings contains finding if {
	some result in results
	trivy(result)
	targets := object.get(result, "Results", [])
	is_array(targets)
	some target in targets
	vulnerabilities := object.get(target, "Vulnerabilities", [])
	is_array(vulnerabilities)
	some v in vulnerabilities
	finding := {
		"id": text(object.get(v, "VulnerabilityID", null)),
		"severity": upper(text(object.get(v, "Severity", null))),
		"package": text(object.get(v, "PkgName", null)),
	}
}

findings contains finding if {
	some result in results
	grype(result)
	some m in result.matches
	finding := {
		"id": text(object.get(m, ["vulnerability", "id"], null)),
		"severity": upper(text(object.get(m, ["vulnerability", "severity"], null))),
		"package": text(object.get(m, ["artifact", "name"], null)),
	}
}

rank(severity) := object.get(ranks, severity, 0)

offending contains f if {
	some f in findings
	rank(f.severity) > max_rank
	not f.id in allow
}

deny contains msg if {
	not statement_type in predicate_types
	msg := sprintf("predicate type %v is not %s", [statement_type, "https://cosign.sigstore.dev/attestation/vuln/v1"])
}

deny contains msg if {
	statement_type in predicate_types
	count(results) == 0
	msg := "the report has no scanner result (predicate.scanner.result)"
}

deny contains msg if {
	statement_type in predicate_types
	some result in results
	not trivy(result)
	not grype(result)
	msg := "the scanner result is neither Trivy JSON (SchemaVersion, Results) nor Grype JSON (matches), so it cannot be read"
}

deny contains msg if {
	max_severity == "(invalid)"
	msg := sprintf("params.maxSeverity must be one of LOW, MEDIUM, HIGH, CRITICAL, not %s", [json.marshal(raw_max_severity)])
}

deny contains msg if {
	allowed := object.get(params, "allow", null)
	allowed != null
	not is_array(allowed)
	msg := sprintf("params.allow must be a list of vulnerability IDs, not %s", [json.marshal(allowed)])
}

# The offending findings grouped by ID (a rule, so grouping takes one pass: a comprehension
# per ID would take a pass per ID).
offending_by_id[f.id] contains f if {
	some f in offending
}

deny contains msg if {
	statement_type in predicate_types
	some id, group in offending_by_id
	worst := max({rank(f.severity) | some f in group})
	packages := sort({f.package | some f in group})
	msg := sprintf("%s (%s) in %s is above maxSeverity %s", [id, names[worst], concat(", ", packages), max_severity])
}
