package vouchsystemerror

import data.lib.vouch.images
import data.lib.vouch.keys
import data.lib.vouch.namespace

# vouch could not reach a verdict because something was unavailable: a registry down or
# rate-limiting, the deadline reached, vouch itself unreachable. Its constraint warns
# under fail-open and denies under fail-closed. system_error is checked, never
# status_code (0 when every key came from Gatekeeper's cache). Everything that is not an
# outage (per-key errors, "request-invalid:" refusals) is VouchVerification's business
# and denied in both modes. The keys are VouchVerification's, namespace prefix included,
# so vouch answers both templates' requests with one verification.
violation[{"msg": msg, "details": {"images": images, "namespace": namespace}}] {
	count(keys) > 0
	response := external_data({"provider": "vouch-verify", "keys": keys})
	response.system_error != ""
	not startswith(response.system_error, "request-invalid:")
	msg := sprintf("vouch could not verify %v: %v", [images, response.system_error])
}
