# SBOM: does the image's software bill of materials list a package or a licence we do not
# accept?
#
# For these predicate types (the predicate is the SBOM document itself, as syft, trivy and
# `cosign attest --type spdxjson|cyclonedx` write it); any other predicate type is denied:
#   - SPDX 2.3 JSON:      https://spdx.dev/Document, https://spdx.dev/Document/v2.3
#                         (the predicate must have spdxVersion)
#   - CycloneDX JSON 1.5+: https://cyclonedx.org/bom, https://cyclonedx.org/bom/v1.5,
#                         https://cyclonedx.org/bom/v1.6 (the predicate must have
#                         bomFormat "CycloneDX")
#
# Packages are SPDX packages[] (name, versionInfo) and CycloneDX components[] (name,
# version), nested components[].components[] included down to four levels (a BOM nested
# deeper is denied, not read in part); pedigree ancestors and metadata.component are not
# read (they describe the image itself or its history, not a package in it).
#
# Licences: an SPDX package's licenseConcluded and licenseDeclared expressions; a CycloneDX
# component's licenses[].expression and licenses[].license.id (licenses[].license.name is
# free text and is not read). An expression includes a denied licence when one of its
# tokens is that id: the expression is split on spaces and parentheses, the operators AND,
# OR and WITH are dropped and a trailing "+" (or later) is ignored; ids compare
# case-insensitively, as SPDX says they should. So denying GPL-2.0-only denies
# "(LGPL-2.0-only OR GPL-2.0-only)" but not "LGPL-2.0-only", and denying GPL-2.0 does not
# deny "GPL-2.0-with-classpath-exception". An expression that only *offers* a denied
# licence (OR) still denies: the policy does not choose licences for you.
#
# Messages:
#   "package <name> <version> is denied"  (without <version> when the SBOM gives none)
#   "package <name> is licensed <expression>, which includes denied licence <id>"
#
# Params (the `params` map of the attestation in vouch's config, or `--params` of
# `vouch attest-check`); both optional; a param that is not a list of strings is denied
# with a message saying so:
#
#   deniedPackages  package names, matched exactly (case-sensitive).
#                   default: []
#                   example: ["log4j-core", "event-stream"]
#
#   deniedLicenses  SPDX licence ids (or LicenseRef-... ids).
#                   default: []
#                   example: ["AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0"]
package vouch.attestations.sbom

import rego.v1

spdx_types := {"https://spdx.dev/Document", "https://spdx.dev/Document/v2.3"}

cyclonedx_types := {
	"https://cyclonedx.org/bom",
	"https://cyclonedx.org/bom/v1.5",
	"https://cyclonedx.org/bom/v1.6",
}

# `input.params` is null when nothing is configured.
params := input.params if {
	is_object(input.params)
} else := {}

list_param(name) := value if {
	value := params[name]
	is_array(value)
} else := []

denied_packages := {name | some name in list_param("deniedPackages")}

denied_licenses := list_param("deniedLicenses")

statement_type := object.get(input.statement, "predicateType", null)

predicate := object.get(input.statement, "predicate", {})

is_spdx if {
	statement_type in spdx_types
	is_string(predicate.spdxVersion)
}

is_cyclonedx if {
	statement_type in cyclonedx_types
	predicate.bomFormat == "CycloneDX"
}

text(value) := value if {
	is_string(value)
} else := "(unnamed)"

# Every package as the document has it: SPDX packages[] and CycloneDX components (nested
# ones included), not copied into new objects — with thousands of packages, building one
# object per package costs more than every check together. `name_of`, `version_of` and
# `licenses_of` read the fields of either format.
packages := array.concat(spdx_packages, [c | some c in components])

spdx_packages := [p |
	is_spdx
	listed := object.get(predicate, "packages", [])
	is_array(listed)
	some p in listed
	is_object(p)
]

name_of(p) := text(object.get(p, "name", null))

version_of(p) := version(object.get(p, "versionInfo", object.get(p, "version", null)))

# SPDX: licenseConcluded and licenseDeclared. CycloneDX: licenses[].expression and
# licenses[].license.id.
licenses_of(p) := [e |
	some field in ["licenseConcluded", "licenseDeclared"]
	e := object.get(p, field, null)
	is_string(e)
] if {
	is_spdx
} else := [e |
	choices := object.get(p, "licenses", [])
	is_array(choices)
	some choice in choices
	is_object(choice)
	some e in [object.get(choice, "expression", null), object.get(choice, ["license", "id"], null)]
	is_string(e)
]

# CycloneDX components and their sub-components (components[].components[]...), down to
# four levels: regorus as vouch builds it has no `walk`, and Rego has no recursion. A BOM
# nested deeper is denied rather than read in part.
components := ((level1 | level2) | level3) | level4

level1 contains c if {
	is_cyclonedx
	some c in children(predicate)
}

level2 contains c if {
	some parent in level1
	some c in children(parent)
}

level3 contains c if {
	some parent in level2
	some c in children(parent)
}

level4 contains c if {
	some parent in level3
	some c in children(parent)
}

children(parent) := [c |
	some c in parent.components
	is_object(c)
] if {
	is_array(parent.components)
} else := []

version(v) := v if {
	is_string(v)
} else := ""

# The denied ids, lower-cased, each to itself as configured.
denied_ids := {lower(id): id |
	some id in denied_licenses
	is_string(id)
}

# The licence ids an expression names: split on whitespace and parentheses, without the
# operators and a trailing "+" (or later), lower-cased. (Plain string functions: regex.split
# compiles its pattern on every call, which is far too slow for thousands of packages.)
license_ids(expression) := {lower(trim_suffix(word, "+")) |
	spaced := strings.replace_n({"(": " ", ")": " ", "\t": " ", "\n": " ", "\r": " "}, expression)
	some word in split(spaced, " ")
	not upper(word) in {"", "AND", "OR", "WITH"}
}

deny contains msg if {
	some name in ["deniedPackages", "deniedLicenses"]
	value := object.get(params, name, null)
	value != null
	not strings_only(value)
	msg := sprintf("params.%s must be a list of strings, not %s", [name, json.marshal(value)])
}

strings_only(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

deny contains msg if {
	not statement_type in spdx_types
	not statement_type in cyclonedx_types
	msg := sprintf("predicate type %v is neither SPDX (https://spdx.dev/Document) nor CycloneDX (https://cyclonedx.org/bom)", [statement_type])
}

deny contains msg if {
	statement_type in spdx_types
	not is_spdx
	msg := "the predicate is not an SPDX JSON document (no spdxVersion)"
}

deny contains msg if {
	statement_type in cyclonedx_types
	not is_cyclonedx
	msg := "the predicate is not a CycloneDX JSON BOM (bomFormat is not CycloneDX)"
}

deny contains msg if {
	some c in level4
	count(children(c)) > 0
	msg := sprintf("component %s has components nested more than four levels deep, which this policy does not read", [text(object.get(c, "name", null))])
}

# The document as JSON text, for one-pass tests of whether anything denied appears at all:
# a clean SBOM of thousands of packages is then not read package by package.
document_text := json.marshal(predicate)

# Denied package names that appear in the document (as JSON strings).
present_names contains name if {
	some name in denied_packages
	is_string(name)
	contains(document_text, json.marshal(name))
}

deny contains msg if {
	some name in present_names
	some p in packages
	name_of(p) == name
	msg := package_denied(name, version_of(p))
}

package_denied(name, v) := sprintf("package %s %s is denied", [name, v]) if v != ""

package_denied(name, v) := sprintf("package %s is denied", [name]) if v == ""

# The denied licence ids that appear anywhere in the document (case-insensitively).
present_ids contains id if {
	count(denied_ids) > 0
	document := lower(document_text)
	some id, _ in denied_ids
	contains(document, id)
}

deny contains msg if {
	some id in present_ids
	denied := denied_ids[id]
	some p in packages
	some expression in licenses_of(p)
	# A cheap substring test first; the expression is split into ids only when it passes.
	contains(lower(expression), id)
	id in license_ids(expression)
	msg := sprintf("package %s is licensed %s, which includes denied licence %s", [name_of(p), expression, denied])
}
