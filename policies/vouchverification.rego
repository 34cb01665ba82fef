package vouchverification

import data.lib.vouch.image_of
import data.lib.vouch.keys
import data.lib.vouch.namespace

# Denies, in both failure modes, every image vouch did not verify. Fail-open is for outages
# only, so everything that is not an outage is raised here, never in VouchSystemError:
# - a verdict with verified false (unsigned, untrusted signer, invalid image, no policy
#   for the image in the object's namespace...);
# - a per-key error: no verdict, for a reason a retry will not fix (registry credentials
#   rejected, registry TLS not trusted, a registry breaking the protocol);
# - a request vouch refused as a whole because of what it holds (systemError starting with
#   "request-invalid:": too many images, a body over the size limit), so a pod author
#   cannot turn a denial into a warning by padding the pod.
# Outages (systemError "unavailable: ..." or Gatekeeper's own transport errors) are left to
# VouchSystemError, which follows the failure policy; on a transport failure the lists
# are null and nothing here matches.
# The keys carry the object's namespace ("[team-a]ghcr.io/acme/app:1"); messages and
# details name the image itself.
violation[{"msg": msg, "details": {"image": image, "namespace": namespace, "code": value.code}}] {
	count(keys) > 0
	response := external_data({"provider": "vouch-verify", "keys": keys})
	item := response.responses[_]
	image := image_of(item[0])
	value := item[1]
	value.verified == false
	msg := sprintf("image %v is not verified: %v: %v", [image, value.code, value.reason])
}

violation[{"msg": msg, "details": {"image": image, "namespace": namespace, "code": code}}] {
	count(keys) > 0
	response := external_data({"provider": "vouch-verify", "keys": keys})
	err := response.errors[_]
	image := image_of(err[0])
	code := split(err[1], ":")[0]
	msg := sprintf("image %v could not be verified: %v", [image, err[1]])
}

violation[{"msg": msg, "details": {"images": n, "namespace": namespace, "code": "request-invalid"}}] {
	n := count(keys)
	n > 0
	response := external_data({"provider": "vouch-verify", "keys": keys})
	startswith(response.system_error, "request-invalid:")
	msg := sprintf("vouch refused to verify the %v image(s) of this object: %v", [n, response.system_error])
}
