package vouchverification

import data.lib.vouch.images

# One violation per image whose verdict is "not verified". Per-key errors and system
# errors are the VouchSystemError template's business: this one only reads verdicts, so a
# transport failure (responses null) raises nothing here.
violation[{"msg": msg, "details": {"image": image, "code": value.code}}] {
	count(images) > 0
	response := external_data({"provider": "vouch-verify", "keys": images})
	item := response.responses[_]
	image := item[0]
	value := item[1]
	value.verified == false
	msg := sprintf("image %v is not verified: %v: %v", [image, value.code, value.reason])
}
