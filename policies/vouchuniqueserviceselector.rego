package vouchuniqueserviceselector

# Services in a namespace must not share a selector. Gatekeeper's replicated inventory lags
# the API server, so two concurrent creates can both pass the inventory check; the claim
# through vouch's atomic register closes that window. Either check denies, and every answer
# of the claim other than "granted" denies too, unless it is an outage and the Constraint
# sets allowOnSystemError (`vouch manifests` sets it true when open, false when closed).

# The selector as sorted "k=v" pairs joined by ",". Label keys and values contain neither
# "=" nor ",", so the form is unambiguous.
canonical(selector) = s {
	pairs := [sprintf("%v=%v", [k, v]) | v := selector[k]]
	s := concat(",", sort(pairs))
}

# Gatekeeper hands DELETE requests over with the deleted object as input.review.object:
# removing a Service never creates a duplicate, so neither check applies (deleting one of
# two Services that share a selector must stay possible).
deleting {
	input.review.operation == "DELETE"
}

service_selector = s {
	input.review.kind.kind == "Service"
	not deleting
	selector := input.review.object.spec.selector
	count(selector) > 0
	s := canonical(selector)
}

# The selector as messages show it: a selector can be kilobytes long.
shown(s) = s {
	count(s) <= 200
} else = t {
	t := sprintf("%v... (%v characters)", [substring(s, 0, 200), count(s)])
}

# The classic check: other Services of the namespace in the inventory with the selector.
inventory_holders[name] {
	s := service_selector
	ns := input.review.object.metadata.namespace
	other := data.inventory.namespace[ns]["v1"]["Service"][name]
	name != input.review.object.metadata.name
	canonical(other.spec.selector) == s
}

violation[{"msg": msg, "details": {"selector": s, "holder": name}}] {
	s := service_selector
	name := inventory_holders[_]
	ns := input.review.object.metadata.namespace
	msg := sprintf("selector %v is already used by Service %v/%v", [shown(s), ns, name])
}

# Admission requests claim; dry runs and audit (no operation) only check.
mode = "claim" {
	input.review.operation != "CONNECT"
	not input.review.dryRun
	input.review.uid
} else = "check" {
	true
}

# The claim names the selector by its SHA-256, so the key stays far below vouch's
# limits.maxKeyBytes whatever selector Kubernetes accepts; the namespace is in the scope.
claim_key = key {
	s := service_selector
	ns := input.review.object.metadata.namespace
	key := json.marshal({
		"scope": sprintf("service-selector/%v", [ns]),
		"value": sprintf("sha256:%v", [crypto.sha256(s)]),
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

# An outage (vouch, or its claim store, unreachable; Gatekeeper's own transport errors and
# timeouts) admits only where the Constraint allows it. A request vouch refused for what it
# holds ("request-invalid:") is not an outage.
granted(response, _) {
	response.system_error != ""
	not startswith(response.system_error, "request-invalid:")
	input.parameters.allowOnSystemError == true
}

# The claim, asked for only when the inventory check passes: a request denied anyway must
# not take the selector, or once the real holder's claim expired the denied copy would hold
# it and the holder's own updates would be refused.
violation[{"msg": msg, "details": {"selector": s, "holder": holder}}] {
	s := service_selector
	count(inventory_holders) == 0
	key := claim_key
	response := external_data({"provider": "vouch-claims", "keys": [key]})
	not granted(response, key)
	[msg, holder] := claim_denial(response, key, s)
}

# Why the claim was not granted, as [message, holder]. The last branch catches every answer
# the others do not explain: anything but "granted" denies.
claim_denial(response, key, s) = [msg, ""] {
	response.system_error != ""
	msg := sprintf("selector %v could not be claimed: %v", [shown(s), response.system_error])
} else = [msg, holder] {
	item := response.responses[_]
	item[0] == key
	holder := item[1].holder
	is_string(holder)
	holder != ""
	msg := sprintf("selector %v is claimed by Service %v", [shown(s), holder])
} else = [msg, ""] {
	err := response.errors[_]
	err[0] == key
	msg := sprintf("selector %v could not be claimed: %v", [shown(s), err[1]])
} else = [msg, ""] {
	item := response.responses[_]
	item[0] == key
	msg := sprintf("selector %v could not be claimed: vouch did not grant it and named no holder (answer: %v)", [shown(s), json.marshal(item[1])])
} else = [msg, ""] {
	msg := sprintf("selector %v could not be claimed: vouch returned no answer for the claim", [shown(s)])
}
