# SLSA provenance: was the image built by a trusted builder, from one of our source
# repositories, at a release ref?
#
# For predicate type https://slsa.dev/provenance/v1 (SLSA Provenance v1.0), as GitHub
# Actions writes it (actions/attest-build-provenance, @actions/attest, npm provenance) and
# as the slsa-github-generator writes it. Any other predicate type is denied.
#
# It checks, in the predicate:
#   - runDetails.builder.id                             is one of params.builderIds (exact)
#   - buildDefinition.buildType                         is one of params.buildTypes (exact)
#   - buildDefinition.externalParameters.workflow.repository
#                                                       is one of params.repositories (exact)
#   - buildDefinition.externalParameters.workflow.ref   starts with one of params.refPrefixes
# A field that is missing counts as not matching. Each failed check is one deny message that
# names what was found and what was expected.
#
# Params (the `params` map of the attestation in vouch's config, or `--params` of
# `vouch attest-check`). Every one is optional except repositories; a param that is not a
# list of strings is denied with a message saying so.
#
#   builderIds   list of builder ids, matched exactly.
#                default (not configured): GitHub's hosted runner,
#                "https://github.com/actions/runner/github-hosted", or any workflow of one of
#                params.repositories ("<repository>/.github/workflows/..."). @actions/attest
#                1.3.0 and later (June 2024; what actions/attest-build-provenance uses)
#                writes the *workflow* as the builder id,
#                https://github.com/OWNER/REPO/.github/workflows/FILE.yml@REF (the
#                job_workflow_ref claim); only the older slsa-framework buildType came with
#                the hosted runner's id. Configure builderIds to accept exactly those ids
#                and nothing else (e.g. only the release workflow at tags).
#                example: ["https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3"]
#
#   buildTypes   list of buildDefinition.buildType values, matched exactly.
#                default: ["https://actions.github.io/buildtypes/workflow/v1",
#                          "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"]
#                example: ["https://actions.github.io/buildtypes/workflow/v1"]
#
#   repositories list of source repository URIs, matched exactly against
#                externalParameters.workflow.repository. REQUIRED: with none configured every
#                provenance is denied ("params.repositories is required ...").
#                default: [] (deny)
#                example: ["https://github.com/acme/app"]
#
#   refPrefixes  list of prefixes; externalParameters.workflow.ref must start with one.
#                default: ["refs/tags/"] (release tags only)
#                example: ["refs/tags/v", "refs/heads/main"]; [""] accepts any ref.
package vouch.attestations.slsa_provenance

import rego.v1

predicate_type := "https://slsa.dev/provenance/v1"

default_builder_ids := ["https://github.com/actions/runner/github-hosted"]

default_build_types := [
	"https://actions.github.io/buildtypes/workflow/v1",
	"https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
]

default_ref_prefixes := ["refs/tags/"]

# `input.params` is null when nothing is configured.
params := input.params if {
	is_object(input.params)
} else := {}

# A list param: its default when absent or null, the list when it is one, else [] (so a
# malformed param matches nothing; `malformed` says why).
list_param(name, fallback) := fallback if {
	object.get(params, name, null) == null
} else := value if {
	value := params[name]
	is_array(value)
} else := []

list_params := ["builderIds", "buildTypes", "repositories", "refPrefixes"]

malformed contains name if {
	some name in list_params
	value := object.get(params, name, null)
	value != null
	not strings_only(value)
}

strings_only(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

builder_ids := list_param("builderIds", default_builder_ids)

builder_ids_configured if object.get(params, "builderIds", null) != null

builder_allowed(id) if id in builder_ids

# Not configured: a workflow of one of the accepted repositories built it.
builder_allowed(id) if {
	not builder_ids_configured
	is_string(id)
	some repository in repositories
	is_string(repository)
	startswith(id, concat("", [repository, "/.github/workflows/"]))
}

builders_expected := builder_ids if {
	builder_ids_configured
} else := array.concat(builder_ids, [concat("", [r, "/.github/workflows/*"]) | some r in repositories])

build_types := list_param("buildTypes", default_build_types)

repositories := list_param("repositories", [])

ref_prefixes := list_param("refPrefixes", default_ref_prefixes)

statement_type := object.get(input.statement, "predicateType", null)

predicate := object.get(input.statement, "predicate", {})

workflow := object.get(predicate, ["buildDefinition", "externalParameters", "workflow"], {})

# A value as a message shows it: strings as they are, anything else (missing included) named.
shown(value) := value if {
	is_string(value)
} else := "(missing)" if {
	value == null
} else := json.marshal(value)

listed(values) := sprintf("[%s]", [concat(", ", [shown(v) | some v in values])])

deny contains msg if {
	some name in malformed
	msg := sprintf("params.%s must be a list of strings, not %s", [name, json.marshal(params[name])])
}

deny contains msg if {
	statement_type != predicate_type
	msg := sprintf("predicate type %s is not %s", [shown(statement_type), predicate_type])
}

deny contains msg if {
	statement_type == predicate_type
	id := object.get(predicate, ["runDetails", "builder", "id"], null)
	not builder_allowed(id)
	msg := sprintf("built by %s, not one of %s", [shown(id), listed(builders_expected)])
}

deny contains msg if {
	statement_type == predicate_type
	build_type := object.get(predicate, ["buildDefinition", "buildType"], null)
	not build_type in build_types
	msg := sprintf("build type %s, not one of %s", [shown(build_type), listed(build_types)])
}

deny contains msg if {
	count(repositories) == 0
	not "repositories" in malformed
	msg := "params.repositories is required: list the source repositories whose builds are accepted, e.g. [https://github.com/acme/app]"
}

deny contains msg if {
	statement_type == predicate_type
	count(repositories) > 0
	repository := object.get(workflow, "repository", null)
	not repository in repositories
	msg := sprintf("built from repository %s, not one of %s", [shown(repository), listed(repositories)])
}

deny contains msg if {
	statement_type == predicate_type
	ref := object.get(workflow, "ref", null)
	not ref_allowed(ref)
	msg := sprintf("built from ref %s, which starts with none of %s", [shown(ref), listed(ref_prefixes)])
}

ref_allowed(ref) if {
	is_string(ref)
	some prefix in ref_prefixes
	is_string(prefix)
	startswith(ref, prefix)
}
