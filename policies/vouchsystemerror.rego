package vouchsystemerror

import data.lib.vouch.images

# vouch could not reach a verdict: the request as a whole failed (system_error, checked
# first: on a transport failure responses and errors are null), or some keys got a
# per-key error. status_code is never consulted: it is 0 when every key came from
# Gatekeeper's cache.
violation[{"msg": msg, "details": {"images": images}}] {
	count(images) > 0
	response := external_data({"provider": "vouch-verify", "keys": images})
	response.system_error != ""
	msg := sprintf("vouch could not verify %v: %v", [images, response.system_error])
}

violation[{"msg": msg, "details": {"image": image}}] {
	count(images) > 0
	response := external_data({"provider": "vouch-verify", "keys": images})
	response.system_error == ""
	err := response.errors[_]
	image := err[0]
	msg := sprintf("vouch could not verify %v: %v", [image, err[1]])
}
