package vouchuniqueserviceselector

# Services in a namespace must not share a selector. Gatekeeper's replicated inventory lags
# the API server, so two concurrent creates can both pass the inventory check; the claim
# through vouch's atomic register closes that window. Either check denies.

# The selector as sorted "k=v" pairs joined by ",".
canonical(selector) = s {
	pairs := [sprintf("%v=%v", [k, v]) | v := selector[k]]
	s := concat(",", sort(pairs))
}

service_selector = s {
	input.review.kind.kind == "Service"
	selector := input.review.object.spec.selector
	count(selector) > 0
	s := canonical(selector)
}

# The classic check: another Service of the namespace in the inventory has the selector.
violation[{"msg": msg, "details": {"selector": s, "holder": name}}] {
	s := service_selector
	ns := input.review.object.metadata.namespace
	other := data.inventory.namespace[ns]["v1"]["Service"][name]
	name != input.review.object.metadata.name
	canonical(other.spec.selector) == s
	msg := sprintf("selector %v is already used by Service %v/%v", [s, ns, name])
}

# Admission requests claim; dry runs and audit (no operation) only check.
mode = "claim" {
	input.review.operation != "DELETE"
	input.review.operation != "CONNECT"
	not input.review.dryRun
	input.review.uid
} else = "check" {
	true
}

claim_key = key {
	ns := input.review.object.metadata.namespace
	key := json.marshal({
		"scope": sprintf("service-selector/%v", [ns]),
		"value": service_selector,
		"owner": sprintf("%v/%v", [ns, input.review.object.metadata.name]),
		"mode": mode,
		"nonce": object.get(input.review, "uid", ""),
	})
}

granted(response, key) {
	response.system_error == ""
	item := response.responses[_]
	item[0] == key
	item[1].granted == true
}

# Uniqueness fails closed when vouch cannot answer, unless the constraint says otherwise.
granted(response, _) {
	response.system_error != ""
	input.parameters.allowOnSystemError == true
}

# The claim: someone else holds the selector (or vouch could not tell).
violation[{"msg": msg, "details": {"selector": s}}] {
	s := service_selector
	key := claim_key
	response := external_data({"provider": "vouch-claims", "keys": [key]})
	not granted(response, key)
	msg := claim_message(response, key, s)
}

claim_message(response, key, s) = msg {
	response.system_error != ""
	msg := sprintf("selector %v could not be claimed: %v", [s, response.system_error])
} else = msg {
	item := response.responses[_]
	item[0] == key
	msg := sprintf("selector %v is claimed by Service %v", [s, item[1].holder])
} else = msg {
	err := response.errors[_]
	msg := sprintf("selector %v could not be claimed: %v", [s, err[1]])
}
